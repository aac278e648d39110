package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// JobState is where a job is in its life: queued → running → succeeded,
// failed or cancelled. A running job goes back to queued when an attempt
// fails, or its lease expires, with attempts left.
type JobState string

// The job states, as the schema's CHECK allows.
const (
	JobStateQueued    JobState = "queued"    // waiting for its run_at and a worker (the default)
	JobStateRunning   JobState = "running"   // claimed by a worker under a lease
	JobStateSucceeded JobState = "succeeded" // final
	JobStateFailed    JobState = "failed"    // final: the last attempt failed
	JobStateCancelled JobState = "cancelled" // final
)

// Valid reports whether s is one of the job states.
func (s JobState) Valid() bool {
	switch s {
	case JobStateQueued, JobStateRunning, JobStateSucceeded, JobStateFailed, JobStateCancelled:
		return true
	}
	return false
}

// Final reports whether s is a state a job never leaves.
func (s JobState) Final() bool {
	return s == JobStateSucceeded || s == JobStateFailed || s == JobStateCancelled
}

// Job limits and defaults.
const (
	// DefaultJobMaxAttempts is the attempts a job gets when
	// NewJob.MaxAttempts is 0 (the schema's default).
	DefaultJobMaxAttempts = 3
	// MaxJobKindLen is the longest job kind accepted, in characters.
	MaxJobKindLen = 100
	// MaxWorkerLen is the longest worker name accepted, in characters.
	MaxWorkerLen = 200
	// MaxEnqueueJobs is the most jobs one [Jobs.EnqueueMany] call takes.
	MaxEnqueueJobs = 10000
	// MaxClaimJobs is the most jobs one [Jobs.Claim] call returns.
	MaxClaimJobs = 1000
	// MaxJobErrorLen is the longest error message [Jobs.Fail] stores, in
	// bytes; a longer one is cut.
	MaxJobErrorLen = 8192
)

// Retry backoff of [Jobs.Fail] and [Jobs.Next] by default (see
// [WithRetryBackoff]): attempt a (1-based) that fails with attempts left
// is retried after min(RetryBackoffBase·2^(a−1), RetryBackoffMax), scaled
// by a random factor in [0.5, 1) so that jobs failing together do not come
// back together.
const (
	RetryBackoffBase = 2 * time.Second
	RetryBackoffMax  = time.Hour
)

// Jobs is the job queue. Workers take jobs with [Jobs.Claim], which leases
// them for a while, keep the lease with [Jobs.Heartbeat], and end each
// attempt with [Jobs.Complete] or [Jobs.Fail]; [Jobs.RescueExpired] returns
// the jobs of vanished workers to the queue. Every change is one
// statement and works through a transaction pooler: no advisory locks, no
// LISTEN, no session state.
//
// A worker is known by its name: name each worker process uniquely (for
// example host:pid:n), because a job's owner is checked by that name.
//
// Jobs of a batch keep the batch's counters: the statement that moves a
// job to a final state also counts it in its batch, and finishes the batch
// when it was the last one (see [Transition]). That relies on READ
// COMMITTED, PostgreSQL's and InTx's default: run the calls outside a
// transaction or in a READ COMMITTED one. Under REPEATABLE READ or
// SERIALIZABLE a call racing another on the same batch fails with
// sqladapter.ErrSerialization instead of waiting (InTx retries it).
type Jobs struct{ base }

// Job is a stored job.
type Job struct {
	ID       uuid.UUID  `db:"id"`
	TenantID uuid.UUID  `db:"tenant_id"`
	BatchID  *uuid.UUID `db:"batch_id"`  // nil for a job outside a batch
	DomainID *uuid.UUID `db:"domain_id"` // nil when the job is about no domain
	Kind     string     `db:"kind"`
	// Payload is the job's input, a JSON object.
	Payload json.RawMessage `db:"payload"`
	State   JobState        `db:"state"`
	// Priority orders claiming: higher first, then earlier RunAt.
	Priority int `db:"priority"`
	// RunAt is when the job may run next.
	RunAt time.Time `db:"run_at"`
	// Attempts counts the claims so far, the current one included.
	Attempts    int `db:"attempts"`
	MaxAttempts int `db:"max_attempts"`
	// LockedBy and LeaseExpiresAt are set exactly while the job is running.
	LockedBy       *string    `db:"locked_by"`
	LeaseExpiresAt *time.Time `db:"lease_expires_at"`
	// Progress is the worker's estimate of the attempt's progress, 0 to 1.
	Progress float64 `db:"progress"`
	// Result is the JSON the worker stored; the JSON null until it
	// stores one.
	Result json.RawMessage `db:"result"`
	// LastError is the message of the last failed attempt.
	LastError *string `db:"last_error"`
	// FinishedAt is set exactly when the job is in a final state.
	FinishedAt *time.Time `db:"finished_at"`
	CreatedAt  time.Time  `db:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at"`
}

// NewJob is a job to enqueue.
type NewJob struct {
	// Kind says what to do, such as "scan": 1 to [MaxJobKindLen]
	// characters. Required.
	Kind string
	// Payload is a JSON object; empty means "{}".
	Payload json.RawMessage
	// Priority orders claiming: higher first. It must fit in 32 bits.
	// Defaults to 0.
	Priority int
	// RunAt is the earliest time the job may run. Defaults to now.
	RunAt time.Time
	// MaxAttempts is how many times the job may be claimed. Defaults to
	// [DefaultJobMaxAttempts].
	MaxAttempts int
	// BatchID adds the job to an unfinished batch of the tenant, whose
	// total grows by one. Defaults to no batch.
	BatchID *uuid.UUID
	// DomainID links the job to a domain of the tenant. Defaults to none.
	DomainID *uuid.UUID
	// ID is the job's id; the zero UUID (the default) lets the database
	// draw one. Choose it (uuid.New(), once per job, before the first
	// attempt) to make the call safe to repeat after a failure whose
	// outcome is unknown — the statement may have run, and may still be
	// running on the server. A repeat whose jobs all exist writes
	// nothing and returns the stored jobs; it waits for an earlier call
	// still in flight to commit or roll back first. In one call either
	// every job has an ID or none does. A stored job of another kind,
	// batch or domain — the ID was reused — or in another tenant fails
	// the call with an error matching sqladapter.ErrConflict, as does a
	// repeat that finds some of its jobs but not all. IDs must be fresh:
	// two different calls given the same ID at once may both write part.
	ID uuid.UUID
}

// JobFilter narrows [Jobs.List]. Zero fields keep all jobs.
type JobFilter struct {
	State   JobState
	BatchID *uuid.UUID
	Kind    string
}

// Transition is what [Jobs.Complete], [Jobs.Fail] or [Jobs.Cancel] did.
type Transition struct {
	// Job is the job after the call.
	Job Job
	// Batch is the job's batch after the call when the call counted the
	// job in it (the job reached a final state); nil otherwise.
	Batch *Batch
	// BatchFinished is true when this call finished the batch: it counted
	// the batch's last unfinished job. Only one call per batch finishes it
	// (a batch finished by [Batches.Cancel] or [Batches.Reconcile] reports
	// it there instead), but its answer can be lost with the connection:
	// to be told every finish at least once, claim the batch's finish
	// notice (see [Batches]) — with [Batches.ClaimFinished] after seeing
	// true, or after an error that leaves it unknown.
	BatchFinished bool
}

// Completion is one job for [Jobs.CompleteMany] to complete.
type Completion struct {
	ID uuid.UUID
	// Result is stored as the job's result; empty keeps the stored one.
	Result json.RawMessage
}

// RescueResult is what [Jobs.RescueExpired] did.
type RescueResult struct {
	// Requeued are the jobs that had attempts left: queued again to run now.
	Requeued []uuid.UUID
	// Failed are the jobs that had used their last attempt: now failed.
	Failed []uuid.UUID
	// FinishedBatches are the batches the failed jobs finished.
	FinishedBatches []uuid.UUID
}

// Enqueue adds one job for the tenant and returns it. Invalid input fails
// with a *[ValidationError] naming the field, before anything is written;
// a BatchID that is not an unfinished batch of the tenant matches
// sqladapter.ErrNotFound; a DomainID that is not a domain of the tenant
// matches sqladapter.ErrForeignKey.
func (r *Jobs) Enqueue(ctx context.Context, tenant uuid.UUID, job NewJob) (Job, error) {
	jobs, err := r.enqueue(ctx, tenant, []NewJob{job}, "", "enqueue job")
	if err != nil {
		return Job{}, err
	}
	return jobs[0], nil
}

// EnqueueMany adds up to [MaxEnqueueJobs] jobs for the tenant in one
// statement and returns them in input order. It writes all of them or
// none: errors are as for [Jobs.Enqueue], with fields named "jobs[i].…".
// No jobs is no statement.
func (r *Jobs) EnqueueMany(ctx context.Context, tenant uuid.UUID, jobs []NewJob) ([]Job, error) {
	if len(jobs) > MaxEnqueueJobs {
		return nil, invalid("jobs", "has %d jobs, more than the %d one call takes", len(jobs), MaxEnqueueJobs)
	}
	return r.enqueue(ctx, tenant, jobs, "jobs", "enqueue jobs")
}

func (r *Jobs) enqueue(ctx context.Context, tenant uuid.UUID, jobs []NewJob, field, op string) ([]Job, error) {
	if err := requireTenant(tenant); err != nil {
		return nil, err
	}
	n := len(jobs)
	kinds, payloads, prios, runAts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	maxes, batches, domains := make([]string, n), make([]string, n), make([]string, n)
	var ids []string // the chosen IDs; none: an empty array
	chosen := make(map[uuid.UUID]int, n)
	for i, j := range jobs {
		prefix := ""
		if field != "" {
			prefix = fmt.Sprintf("%s[%d].", field, i)
		}
		if (j.ID != uuid.Nil) != (jobs[0].ID != uuid.Nil) {
			return nil, invalid(prefix+"id", "is set on some jobs of the call and not on others: give every job an ID, or none")
		}
		if j.ID != uuid.Nil {
			if k, dup := chosen[j.ID]; dup {
				return nil, invalid(prefix+"id", "repeats %s[%d].id", field, k)
			}
			chosen[j.ID] = i
			ids = append(ids, j.ID.String())
		}
		if err := checkJobKind(prefix+"kind", j.Kind); err != nil {
			return nil, err
		}
		payload, err := jobObject(prefix+"payload", j.Payload)
		if err != nil {
			return nil, err
		}
		if err := checkInt32(prefix+"priority", j.Priority); err != nil {
			return nil, err
		}
		maxAttempts, err := jobMaxAttempts(prefix+"max_attempts", j.MaxAttempts)
		if err != nil {
			return nil, err
		}
		kinds[i], payloads[i], prios[i], maxes[i] = j.Kind, payload, strconv.Itoa(j.Priority), strconv.Itoa(maxAttempts)
		if !j.RunAt.IsZero() {
			runAts[i] = j.RunAt.UTC().Format(time.RFC3339Nano)
		}
		if batches[i], err = optionalID(prefix+"batch_id", j.BatchID); err != nil {
			return nil, err
		}
		if domains[i], err = optionalID(prefix+"domain_id", j.DomainID); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return []Job{}, nil
	}
	stmt := sqlJobEnqueue
	if len(chosen) == 0 {
		stmt = sqlJobEnqueueFresh
	}
	out := []Job{}
	err := r.q.SelectContext(ctx, &out, r.sql(stmt), tenant,
		textArray(kinds), textArray(payloads), textArray(prios), textArray(runAts),
		textArray(maxes), textArray(batches), textArray(domains), textArray(ids))
	if err != nil {
		return nil, wrap(op, err)
	}
	switch {
	case len(out) == n:
		return out, nil
	case len(chosen) > 0:
		return r.enqueued(ctx, tenant, jobs, field, op, len(out))
	case len(out) == 0:
		return nil, classed(op, sqladapter.ErrNotFound, "a batch of the jobs is not an unfinished batch of the tenant")
	}
	return nil, fmt.Errorf("%s: %d rows returned for %d jobs", op, len(out), n)
}

// enqueued finishes an enqueue of jobs with chosen IDs that wrote fewer
// rows (written) than jobs: a repeat of a call that wrote them returns the
// stored jobs; anything else is an error.
func (r *Jobs) enqueued(ctx context.Context, tenant uuid.UUID, jobs []NewJob, field, op string, written int) ([]Job, error) {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID.String()
	}
	var stored []Job
	if err := r.q.SelectContext(ctx, &stored, r.sql(sqlJobsByID), textArray(ids)); err != nil {
		return nil, wrap(op, err)
	}
	if len(stored) == 0 && written == 0 {
		return nil, classed(op, sqladapter.ErrNotFound, "a batch of the jobs is not an unfinished batch of the tenant")
	}
	byID := make(map[uuid.UUID]Job, len(stored))
	for _, j := range stored {
		byID[j.ID] = j
	}
	name := func(i int) string {
		if field == "" {
			return "id"
		}
		return fmt.Sprintf("%s[%d].id", field, i)
	}
	out := make([]Job, len(jobs))
	for i, want := range jobs {
		got, ok := byID[want.ID]
		switch {
		case !ok:
			return nil, classed(op, sqladapter.ErrConflict,
				"%d of the %d jobs exist (%s %s does not): a repeated call must pass the same jobs, and IDs must be fresh",
				len(stored), len(jobs), name(i), want.ID)
		case got.TenantID != tenant:
			return nil, classed(op, sqladapter.ErrConflict, "%s %s is taken by a job of another tenant", name(i), want.ID)
		case got.Kind != want.Kind || !sameID(got.BatchID, want.BatchID) || !sameID(got.DomainID, want.DomainID):
			return nil, classed(op, sqladapter.ErrConflict,
				"%s %s is taken by another job (kind %s, batch %s, domain %s)",
				name(i), want.ID, quote(got.Kind), idText(got.BatchID), idText(got.DomainID))
		}
		out[i] = got
	}
	if written > 0 {
		// Every job exists, but this call wrote some of them: another call
		// given the same IDs ran at the same time.
		return nil, classed(op, sqladapter.ErrConflict,
			"%d of the %d jobs were written by another call with the same IDs at the same time: IDs must be fresh", len(jobs)-written, len(jobs))
	}
	return out, nil
}

func sameID(a, b *uuid.UUID) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func idText(id *uuid.UUID) string {
	if id == nil {
		return "none"
	}
	return id.String()
}

// Claim leases up to n (1 to [MaxClaimJobs]) runnable jobs — queued, with
// run_at not in the future — to worker for lease, highest priority first,
// then earliest run_at, in one statement. Each claimed job is running,
// locked by worker until now+lease, with one more attempt counted; a batch
// whose first job is claimed becomes running. Concurrent claimers never
// get the same job and do not wait for each other. A nil tenant claims
// from every tenant. No runnable job is an empty slice, not an error.
func (r *Jobs) Claim(ctx context.Context, tenant *uuid.UUID, worker string, n int, lease time.Duration) ([]Job, error) {
	if tenant != nil {
		if err := requireTenant(*tenant); err != nil {
			return nil, err
		}
	}
	if err := checkWorker(worker); err != nil {
		return nil, err
	}
	if n < 1 || n > MaxClaimJobs {
		return nil, invalid("n", "must be between 1 and %d, got %d", MaxClaimJobs, n)
	}
	if err := checkLease(lease); err != nil {
		return nil, err
	}
	stmt, args := sqlJobClaim, []any{n, worker, lease.Milliseconds()}
	if tenant != nil {
		stmt, args = sqlJobClaimTenant, append(args, *tenant)
	}
	jobs := []Job{}
	if err := r.q.SelectContext(ctx, &jobs, r.sql(stmt), args...); err != nil {
		return nil, wrap("claim jobs", err)
	}
	return jobs, nil
}

// Heartbeat extends the lease of a job worker is running to now+lease and
// returns the new expiry. It fails with [ErrLeaseLost] when the job is not
// running under worker (rescued, cancelled or finished).
//
// An expired lease still belongs to its worker until [Jobs.RescueExpired]
// takes the job back; Heartbeat, Complete and Fail succeed until then.
func (r *Jobs) Heartbeat(ctx context.Context, id uuid.UUID, worker string, lease time.Duration) (time.Time, error) {
	if err := checkWorker(worker); err != nil {
		return time.Time{}, err
	}
	if err := checkLease(lease); err != nil {
		return time.Time{}, err
	}
	var until time.Time
	err := r.q.GetContext(ctx, &until, r.sql(sqlJobHeartbeat), id, worker, lease.Milliseconds())
	if err != nil {
		return time.Time{}, leaseErr("heartbeat job", err)
	}
	return until, nil
}

// SetProgress records the progress (0 to 1) of a job worker is running. It
// fails with [ErrLeaseLost] when the job is not running under worker.
func (r *Jobs) SetProgress(ctx context.Context, id uuid.UUID, worker string, progress float64) error {
	if err := checkWorker(worker); err != nil {
		return err
	}
	if math.IsNaN(progress) || progress < 0 || progress > 1 {
		return invalid("progress", "must be between 0 and 1, got %v", progress)
	}
	return r.execOwned(ctx, "set job progress", sqlJobSetProgress, id, worker, progress)
}

// SetResult stores a JSON result for a job worker is running (a partial
// result, say, that [Jobs.Complete] may replace). It fails with
// [ErrLeaseLost] when the job is not running under worker.
func (r *Jobs) SetResult(ctx context.Context, id uuid.UUID, worker string, result json.RawMessage) error {
	if err := checkWorker(worker); err != nil {
		return err
	}
	res, err := jobJSON("result", result)
	if err != nil {
		return err
	}
	if res == nil {
		return invalid("result", "is empty")
	}
	return r.execOwned(ctx, "set job result", sqlJobSetResult, id, worker, res)
}

// Complete marks a job worker is running succeeded, with progress 1 and
// result stored (an empty result keeps the stored one), and counts it in
// its batch in the same statement. It fails with [ErrLeaseLost] when the
// job is not running under worker.
func (r *Jobs) Complete(ctx context.Context, id uuid.UUID, worker string, result json.RawMessage) (Transition, error) {
	if err := checkWorker(worker); err != nil {
		return Transition{}, err
	}
	res, err := jobJSON("result", result)
	if err != nil {
		return Transition{}, err
	}
	return r.transition(ctx, "complete job", sqlJobComplete, id, worker, res)
}

// CompleteMany does what [Jobs.Complete] does for up to [MaxClaimJobs]
// jobs worker is running, in one statement: each is marked succeeded, with
// progress 1 and its result stored, and counted in its batch — every batch
// once, for all of its jobs in the call. It returns one Transition per job
// it completed, in input order; a job not running under worker (the
// case where Complete fails with [ErrLeaseLost]) is left out, so compare
// the ids to find those. The jobs of one batch share its state after the
// call in Transition.Batch; a batch the call finished has BatchFinished
// true on exactly one of them, the last in input order (claim its finish
// notice as after Complete, see [Batches]). Ids must be distinct; no jobs
// is no statement.
func (r *Jobs) CompleteMany(ctx context.Context, worker string, jobs []Completion) ([]Transition, error) {
	if err := checkWorker(worker); err != nil {
		return nil, err
	}
	if len(jobs) > MaxClaimJobs {
		return nil, invalid("jobs", "has %d jobs, more than the %d one call takes", len(jobs), MaxClaimJobs)
	}
	ids, results := make([]string, len(jobs)), make([]string, len(jobs))
	seen := make(map[uuid.UUID]bool, len(jobs))
	for i, c := range jobs {
		switch {
		case c.ID == uuid.Nil:
			return nil, invalid(fmt.Sprintf("jobs[%d].id", i), "is the nil UUID")
		case seen[c.ID]:
			return nil, invalid(fmt.Sprintf("jobs[%d].id", i), "%s is in the list twice", c.ID)
		}
		seen[c.ID] = true
		res, err := jobJSON(fmt.Sprintf("jobs[%d].result", i), c.Result)
		if err != nil {
			return nil, err
		}
		ids[i] = c.ID.String()
		if res != nil {
			results[i] = res.(string)
		}
	}
	if len(jobs) == 0 {
		return []Transition{}, nil
	}
	var rows []struct {
		transitionRow
		Ord int `db:"ord"`
	}
	if err := r.q.SelectContext(ctx, &rows, r.sql(sqlJobCompleteMany), worker, textArray(ids), textArray(results)); err != nil {
		return nil, wrap("complete jobs", err)
	}
	out := make([]Transition, len(rows))
	for i, row := range rows {
		out[i] = row.transition()
	}
	return out, nil
}

// Fail ends the current attempt of a job worker is running with errMsg.
// With attempts left the job is queued again after a backoff (see
// [RetryBackoffBase]) and its progress reset; after its last attempt it is
// failed, and counted in its batch in the same statement. Invalid UTF-8
// and NUL bytes in errMsg are replaced, and a message longer than
// [MaxJobErrorLen] bytes is cut. It fails with [ErrLeaseLost] when the job
// is not running under worker.
func (r *Jobs) Fail(ctx context.Context, id uuid.UUID, worker string, errMsg string) (Transition, error) {
	if err := checkWorker(worker); err != nil {
		return Transition{}, err
	}
	return r.transition(ctx, "fail job", sqlJobFail, id, worker, cleanJobError(errMsg), r.backoff[0], r.backoff[1])
}

// Cancel cancels a queued or running job of the tenant and counts it in
// its batch in the same statement; the worker of a running job gets
// [ErrLeaseLost] from its next call. Cancelling a cancelled job returns it
// unchanged. A job that succeeded or failed cannot be cancelled: that
// matches sqladapter.ErrConflict. A missing job matches
// sqladapter.ErrNotFound.
func (r *Jobs) Cancel(ctx context.Context, tenant, id uuid.UUID) (Transition, error) {
	if err := requireTenant(tenant); err != nil {
		return Transition{}, err
	}
	t, err := r.transition(ctx, "cancel job", sqlJobCancel, tenant, id)
	if !errors.Is(err, ErrLeaseLost) {
		return t, err
	}
	// Nothing changed: say why.
	job, err := r.Get(ctx, tenant, id)
	switch {
	case err != nil:
		return Transition{}, fmt.Errorf("cancel job: %w", err)
	case job.State == JobStateCancelled:
		return Transition{Job: job}, nil
	default:
		return Transition{}, classed("cancel job", sqladapter.ErrConflict, "the job has %s", job.State)
	}
}

// RescueExpired takes back every running job whose lease has expired —
// its worker stopped renewing it, so it is presumed gone. A job with
// attempts left is queued again to run at once (the lost attempt stays
// counted); a job that was on its last attempt is failed and counted in
// its batch, which may finish the batch. last_error says whose lease
// expired. Run it periodically from any one or more processes: concurrent
// calls skip each other's rows. It covers all tenants.
func (r *Jobs) RescueExpired(ctx context.Context) (RescueResult, error) {
	var rows []struct {
		ID    uuid.UUID `db:"id"`
		State string    `db:"state"`
		Batch bool      `db:"batch"`
	}
	if err := r.q.SelectContext(ctx, &rows, r.sql(sqlJobRescue)); err != nil {
		return RescueResult{}, wrap("rescue expired jobs", err)
	}
	res := RescueResult{Requeued: []uuid.UUID{}, Failed: []uuid.UUID{}, FinishedBatches: []uuid.UUID{}}
	for _, row := range rows {
		switch {
		case row.Batch:
			res.FinishedBatches = append(res.FinishedBatches, row.ID)
		case row.State == string(JobStateQueued):
			res.Requeued = append(res.Requeued, row.ID)
		default:
			res.Failed = append(res.Failed, row.ID)
		}
	}
	return res, nil
}

// Get returns a job of the tenant, or an error matching
// sqladapter.ErrNotFound.
func (r *Jobs) Get(ctx context.Context, tenant, id uuid.UUID) (Job, error) {
	return getRow[Job](ctx, r.base, "get job", sqlJobGet, tenant, id)
}

// List returns one page of the tenant's jobs that pass the filter, oldest
// first (ordered by creation time, then id).
func (r *Jobs) List(ctx context.Context, tenant uuid.UUID, filter JobFilter, page Page) (PageOf[Job], error) {
	if err := requireTenant(tenant); err != nil {
		return PageOf[Job]{}, err
	}
	if filter.State != "" && !filter.State.Valid() {
		return PageOf[Job]{}, invalid("state", "%s is not a job state (queued, running, succeeded, failed, cancelled)", quote(string(filter.State)))
	}
	var batch any // NULL: any batch, or none
	if filter.BatchID != nil {
		batch = *filter.BatchID
	}
	return selectPage[Job](ctx, r.base, "list jobs", sqlJobList, page,
		tenant, string(filter.State), batch, filter.Kind)
}

// transition runs a job-to-final statement (see sqlJobTally). No row means
// the job was not in the state the statement requires: [ErrLeaseLost].
func (r *Jobs) transition(ctx context.Context, op, stmt string, args ...any) (Transition, error) {
	var row transitionRow
	if err := r.q.GetContext(ctx, &row, r.sql(stmt), args...); err != nil {
		return Transition{}, leaseErr(op, err)
	}
	return row.transition(), nil
}

// execOwned runs an update of a job its worker owns.
func (r *Jobs) execOwned(ctx context.Context, op, stmt string, args ...any) error {
	n, err := exec(ctx, r.base, op, stmt, args...)
	if err == nil && n == 0 {
		err = fmt.Errorf("%s: %w", op, ErrLeaseLost)
	}
	return err
}

// leaseErr reports no row as ErrLeaseLost, other errors classified.
func leaseErr(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, ErrLeaseLost)
	}
	return wrap(op, err)
}
