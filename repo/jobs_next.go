package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Outcome is how a worker's attempt at a job ended, for [Jobs.Next].
type Outcome struct {
	ID uuid.UUID
	// Err, when not empty, fails the attempt as [Jobs.Fail] does: the job
	// is queued again after the retry backoff while it has attempts left,
	// else failed. Empty completes the job as [Jobs.Complete] does.
	Err string
	// Result is stored as a completed job's result; empty keeps the
	// stored one. Ignored when Err is set.
	Result json.RawMessage
}

// NextResult is what [Jobs.Next] did.
type NextResult struct {
	// Jobs are the claimed jobs, as [Jobs.Claim] returns them: running
	// under the worker, highest priority first, then earliest run_at.
	Jobs []Job
	// Lost are the outcomes that changed nothing because their job was
	// not running under the worker any more (rescued or cancelled
	// meanwhile): what [ErrLeaseLost] says for one job. The others were
	// recorded.
	Lost []uuid.UUID
	// Finished are the batches this call finished: it counted their last
	// job. As with [Transition.BatchFinished], only one call reports each
	// finish, and its answer can be lost with the connection: claim the
	// finish notice with [Batches.ClaimFinished] (see [Batches]).
	Finished []Batch
}

// Next is a worker's whole round trip: it records the outcomes of the
// jobs worker ran (completing or failing each, counted in its batch) and
// claims up to n (0 to [MaxClaimJobs]) more runnable jobs for worker with a
// lease, as [Jobs.Claim] does — all in one statement, whose plan the
// server keeps per connection (a PL/pgSQL function: safe through a
// transaction pooler). A worker loop calls Next with the outcomes of the
// jobs the previous call gave it; n 0 only records, no outcomes only
// claims. A nil tenant claims from every tenant.
//
// The statement counts each finished job in its batch and finishes the
// batch when it was the last one, exactly as Complete and Fail do, and
// reports the finish once (NextResult.Finished); jobs without a batch
// take no part in it. As for Claim and Complete, run it outside a
// transaction or in a READ COMMITTED one.
//
// Invalid input fails with a *[ValidationError] before anything is sent:
// a nil or repeated outcome id ("done[i].id"), a result that is not JSON
// ("done[i].result"), more than [MaxClaimJobs] outcomes.
func (r *Jobs) Next(ctx context.Context, tenant *uuid.UUID, worker string, done []Outcome, n int, lease time.Duration) (NextResult, error) {
	var t any // NULL: every tenant
	if tenant != nil {
		if err := requireTenant(*tenant); err != nil {
			return NextResult{}, err
		}
		t = *tenant
	}
	if err := checkWorker(worker); err != nil {
		return NextResult{}, err
	}
	if n < 0 || n > MaxClaimJobs {
		return NextResult{}, invalid("n", "must be between 0 and %d, got %d", MaxClaimJobs, n)
	}
	if err := checkLease(lease); err != nil {
		return NextResult{}, err
	}
	if len(done) > MaxClaimJobs {
		return NextResult{}, invalid("done", "has %d outcomes, more than the %d one call takes", len(done), MaxClaimJobs)
	}
	ids, results, errs := make([]string, len(done)), make([]string, len(done)), make([]string, len(done))
	seen := make(map[uuid.UUID]bool, len(done))
	for i, o := range done {
		switch {
		case o.ID == uuid.Nil:
			return NextResult{}, invalid(fmt.Sprintf("done[%d].id", i), "is the nil UUID")
		case seen[o.ID]:
			return NextResult{}, invalid(fmt.Sprintf("done[%d].id", i), "%s is in the list twice", o.ID)
		}
		seen[o.ID] = true
		ids[i] = o.ID.String()
		if o.Err != "" {
			errs[i] = cleanJobError(o.Err)
			continue
		}
		res, err := jobJSON(fmt.Sprintf("done[%d].result", i), o.Result)
		if err != nil {
			return NextResult{}, err
		}
		if res != nil {
			results[i] = res.(string)
		}
	}
	out := NextResult{Jobs: []Job{}, Lost: []uuid.UUID{}, Finished: []Batch{}}
	if len(done) == 0 && n == 0 {
		return out, nil
	}
	rows, err := r.q.QueryxContext(ctx, r.sql(sqlJobNext), worker, textArray(ids), textArray(results), textArray(errs),
		n, lease.Milliseconds(), t, r.backoff[0], r.backoff[1])
	if err != nil {
		return NextResult{}, wrap("next jobs", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			row                                                  Job
			what                                                 string
			tenantID                                             uuid.NullUUID
			batchID, domainID                                    uuid.NullUUID
			kind, state, lockedBy, lastError                     sql.NullString
			prio, attempts, maxAttempts                          sql.NullInt64
			runAt, leaseExpires, finishedAt, createdAt, updatedA sql.NullTime
			progress                                             sql.NullFloat64
			payload, result                                      []byte
			batch                                                jsonRow[Batch]
		)
		err := rows.Scan(&what, &row.ID, &tenantID, &batchID, &domainID, &kind, &payload, &state, &prio, &runAt,
			&attempts, &maxAttempts, &lockedBy, &leaseExpires, &progress, &result, &lastError, &finishedAt,
			&createdAt, &updatedA, &batch)
		if err != nil {
			return NextResult{}, wrap("next jobs", err)
		}
		switch what {
		case "job":
			row.TenantID, row.Kind, row.State = tenantID.UUID, kind.String, JobState(state.String)
			row.BatchID, row.DomainID = nullID(batchID), nullID(domainID)
			row.Priority, row.Attempts, row.MaxAttempts = int(prio.Int64), int(attempts.Int64), int(maxAttempts.Int64)
			row.RunAt, row.CreatedAt, row.UpdatedAt = runAt.Time, createdAt.Time, updatedA.Time
			row.LockedBy, row.LastError = nullString(lockedBy), nullString(lastError)
			row.LeaseExpiresAt, row.FinishedAt = nullTime(leaseExpires), nullTime(finishedAt)
			row.Progress, row.Payload, row.Result = progress.Float64, payload, result
			out.Jobs = append(out.Jobs, row)
		case "lost":
			out.Lost = append(out.Lost, row.ID)
		case "batch":
			if batch.v == nil {
				return NextResult{}, fmt.Errorf("next jobs: batch %s finished without its row", row.ID)
			}
			out.Finished = append(out.Finished, *batch.v)
		default:
			return NextResult{}, fmt.Errorf("next jobs: unexpected row %q", what)
		}
	}
	if err := rows.Err(); err != nil {
		return NextResult{}, wrap("next jobs", err)
	}
	slices.SortStableFunc(out.Jobs, func(a, b Job) int {
		switch {
		case a.Priority != b.Priority:
			return b.Priority - a.Priority
		case !a.RunAt.Equal(b.RunAt):
			return a.RunAt.Compare(b.RunAt)
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out, nil
}

func nullID(v uuid.NullUUID) *uuid.UUID {
	if !v.Valid {
		return nil
	}
	return &v.UUID
}

func nullString(v sql.NullString) *string {
	if !v.Valid {
		return nil
	}
	return &v.String
}

func nullTime(v sql.NullTime) *time.Time {
	if !v.Valid {
		return nil
	}
	t := v.Time
	return &t
}
