package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// BatchStatus is where a batch is in its life: pending → running →
// completed, completed_with_errors, failed or cancelled.
type BatchStatus string

// The batch statuses, as the schema's CHECK allows.
const (
	BatchStatusPending             BatchStatus = "pending"               // no job claimed yet (the default)
	BatchStatusRunning             BatchStatus = "running"               // a job was claimed
	BatchStatusCompleted           BatchStatus = "completed"             // final: every job succeeded
	BatchStatusCompletedWithErrors BatchStatus = "completed_with_errors" // final: some succeeded, others failed or were cancelled
	BatchStatusFailed              BatchStatus = "failed"                // final: none succeeded, some failed
	BatchStatusCancelled           BatchStatus = "cancelled"             // final: cancelled, or every job was
)

// Valid reports whether s is one of the batch statuses.
func (s BatchStatus) Valid() bool {
	switch s {
	case BatchStatusPending, BatchStatusRunning, BatchStatusCompleted, BatchStatusCompletedWithErrors,
		BatchStatusFailed, BatchStatusCancelled:
		return true
	}
	return false
}

// Final reports whether s is a status a batch never leaves.
func (s BatchStatus) Final() bool {
	return s.Valid() && s != BatchStatusPending && s != BatchStatusRunning
}

// Batch limits and defaults.
const (
	// MaxBatchNameLen is the longest batch name accepted, in characters.
	MaxBatchNameLen = 200
	// DefaultBatchJobKind is the kind of a batch's jobs when
	// BatchOptions.Kind is empty.
	DefaultBatchJobKind = "scan"
)

// Batches groups the jobs submitted together — one job per domain — and
// counts how they end. A batch finishes exactly once, in the statement
// that counts its last job (see [Transition]), by [Batches.Cancel], or by
// [Batches.Reconcile]; each reports it to its caller.
//
// # Finish notices
//
// That report can be lost: when the connection breaks after the server
// committed the finishing statement, the batch is finished and its caller
// never hears it. So every finish also leaves a finish notice in the batch
// row, which [Batches.ClaimFinished] (one batch) and
// [Batches.ClaimFinishNotices] (a sweep over finished batches) claim. What
// holds:
//
//   - exactly one claim of each notice succeeds: the first call to take it
//     records its key ("by"), and no later call takes it from that key;
//   - claims can be repeated: a call repeated with the same key returns the
//     same claim (ClaimFinished reports the batch claimed again;
//     ClaimFinishNotices returns the batches the key holds, plus new ones
//     up to its limit), so a caller whose claim failed — its answer lost
//     too — repeats it with the same key and learns what it holds.
//
// So each finish is delivered at least once to the one claimer that holds
// its notice, provided that claimer repeats a failed call until it gets an
// answer; a claimer that gives up (or crashes) after a failed call may hold
// notices it never learned of — they stay visible in the table
// (finish_claimed_by). Act on a finish (send the webhook, start the next
// stage) only once you hold its notice, and make that action idempotent if
// the claimer can crash between the claim and the action.
//
// The usual arrangement: the worker whose Complete or Fail saw
// BatchFinished — or failed with a connection error, so it cannot tell —
// calls ClaimFinished with the job's batch and its own name; a reconciler
// (or the rescuer, after [Jobs.RescueExpired]) calls ClaimFinishNotices
// every minute or so with a fresh key, which picks up every finish whose
// report was lost or that Cancel and Reconcile reported to callers that did
// not claim it.
type Batches struct{ base }

// Batch is a stored batch.
type Batch struct {
	ID       uuid.UUID   `db:"id"`
	TenantID uuid.UUID   `db:"tenant_id"`
	Name     string      `db:"name"`
	Status   BatchStatus `db:"status"`
	// Total counts the batch's jobs; Succeeded, Failed and Cancelled those
	// that ended so.
	Total     int `db:"total"`
	Succeeded int `db:"succeeded"`
	Failed    int `db:"failed"`
	Cancelled int `db:"cancelled"`
	// FinishedAt is set exactly when the status is final.
	FinishedAt *time.Time `db:"finished_at"`
	CreatedAt  time.Time  `db:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at"`
}

// Done counts the batch's jobs in a final state.
func (b Batch) Done() int { return b.Succeeded + b.Failed + b.Cancelled }

// Progress is the fraction of the batch's jobs in a final state, 0 to 1
// (1 for a batch without jobs).
func (b Batch) Progress() float64 {
	if b.Total <= 0 {
		return 1
	}
	return min(float64(b.Done())/float64(b.Total), 1)
}

// Finished reports whether the batch has a final status.
func (b Batch) Finished() bool { return b.FinishedAt != nil }

// BatchOptions shape the jobs of a new batch.
type BatchOptions struct {
	// Name labels the batch: at most [MaxBatchNameLen] characters.
	Name string
	// Kind is the jobs' kind. Defaults to [DefaultBatchJobKind].
	Kind string
	// Priority is the jobs' priority (see [NewJob]). Defaults to 0.
	Priority int
	// MaxAttempts is each job's attempt limit. Defaults to
	// [DefaultJobMaxAttempts].
	MaxAttempts int
	// Payload is a JSON object given to every job, with the key "domain"
	// set to the job's normalised domain name. Defaults to "{}".
	Payload json.RawMessage
	// RunAt is when the jobs may run. Defaults to now.
	RunAt time.Time
	// ID is the new batch's id; the zero UUID (the default) lets the
	// database draw one. Choose it yourself (uuid.New(), once per batch,
	// before the first attempt) to make Create safe to repeat after a
	// failure whose outcome is unknown — the connection broke after the
	// statement was sent, so it may have run, and may still be running on
	// the server. A repeat with the same ID writes nothing when the batch
	// exists, and returns the stored batch; it waits for an earlier call
	// still in flight to commit or roll back first. Looking the batch up
	// by name instead is not safe: the lookup can run before the earlier
	// statement commits, and the repeat then writes a second batch. A
	// stored batch with another name or without a job for each of the
	// call's domains — the ID was reused for another batch — or an ID
	// taken in another tenant fails the call with an error matching
	// sqladapter.ErrConflict, and nothing is written.
	ID uuid.UUID
}

// BatchFilter narrows [Batches.List]. Zero fields keep all batches.
type BatchFilter struct {
	Status BatchStatus
}

// BatchResult is what [Batches.Cancel] or [Batches.Reconcile] did.
type BatchResult struct {
	// Batch is the batch after the call.
	Batch Batch
	// Finished is true when this call gave the batch its final status.
	Finished bool
	// JobsCancelled counts the jobs [Batches.Cancel] cancelled.
	JobsCancelled int
}

// Create submits a batch for the tenant: it upserts the domains (inserting
// the new ones, as [Domains.BulkUpsert] does; unlike BulkUpsert it sets
// updated_at on those that exist, the price of finding their ids in the
// same single statement), inserts the batch, and enqueues one job per
// distinct domain linked to the batch and the domain — all in one
// statement, so it writes everything or nothing whatever the size, on a
// *sqladapter.DB or inside a transaction. Domains are normalised with
// [NormalizeDomain]; forms of one name collapse into one job. Up to
// [MaxBatchDomains] names; an invalid one rejects the whole batch before
// anything is written, with a *[ValidationError] for field "domains[i]".
// With [BatchOptions.ID] set it is safe to repeat after a failure (one
// more statement, or two, reads the stored batch when the ID exists).
func (r *Batches) Create(ctx context.Context, tenant uuid.UUID, domains []string, opts BatchOptions) (Batch, error) {
	if err := requireTenant(tenant); err != nil {
		return Batch{}, err
	}
	switch {
	case len(domains) == 0:
		return Batch{}, invalid("domains", "is empty")
	case len(domains) > MaxBatchDomains:
		return Batch{}, invalid("domains", "has %d names, more than the %d one batch takes", len(domains), MaxBatchDomains)
	}
	name := opts.Name
	if err := checkText("name", name, MaxBatchNameLen); err != nil {
		return Batch{}, err
	}
	kind := opts.Kind
	if kind == "" {
		kind = DefaultBatchJobKind
	}
	if err := checkJobKind("kind", kind); err != nil {
		return Batch{}, err
	}
	if err := checkInt32("priority", opts.Priority); err != nil {
		return Batch{}, err
	}
	maxAttempts, err := jobMaxAttempts("max_attempts", opts.MaxAttempts)
	if err != nil {
		return Batch{}, err
	}
	payload, err := jobObject("payload", opts.Payload)
	if err != nil {
		return Batch{}, err
	}
	var runAt any // NULL: now
	if !opts.RunAt.IsZero() {
		runAt = opts.RunAt.UTC()
	}
	seen := make(map[string]bool, len(domains))
	names := make([]string, 0, len(domains))
	for i, raw := range domains {
		norm, err := normalizeField(fmt.Sprintf("domains[%d]", i), raw)
		if err != nil {
			return Batch{}, err
		}
		if !seen[norm] {
			seen[norm] = true
			names = append(names, norm)
		}
	}
	slices.Sort(names)
	var id any // NULL: a new id
	if opts.ID != uuid.Nil {
		id = opts.ID
	}
	var b Batch
	err = r.q.GetContext(ctx, &b, r.sql(sqlBatchCreate),
		tenant, textArray(names), name, kind, payload, opts.Priority, runAt, maxAttempts, id)
	switch {
	case err == nil:
		return b, nil
	case opts.ID == uuid.Nil || !errors.Is(sqladapter.Classify(err), sqladapter.ErrNotFound):
		return Batch{}, wrap("create batch", err)
	}
	// The id exists: a repeat of a Create that wrote it (the statement
	// waited for it to commit), or an id taken by another batch.
	b, err = r.Get(ctx, tenant, opts.ID)
	switch {
	case errors.Is(err, sqladapter.ErrNotFound):
		return Batch{}, classed("create batch", sqladapter.ErrConflict, "id %s is taken by a batch of another tenant", opts.ID)
	case err != nil:
		return Batch{}, wrap("create batch", err)
	case b.Name != name:
		return Batch{}, classed("create batch", sqladapter.ErrConflict,
			"id %s is taken by another batch (named %s; this call names it %s)", opts.ID, quote(b.Name), quote(name))
	}
	var have int
	err = r.q.GetContext(ctx, &have, r.sql(sqlBatchHasDomains), tenant, opts.ID, textArray(names))
	switch {
	case err != nil:
		return Batch{}, wrap("create batch", err)
	case have != len(names):
		return Batch{}, classed("create batch", sqladapter.ErrConflict,
			"id %s is taken by another batch (it has jobs for %d of this call's %d domains)", opts.ID, have, len(names))
	}
	return b, nil
}

// Get returns a batch of the tenant with its counters (see
// [Batch.Progress]), or an error matching sqladapter.ErrNotFound.
func (r *Batches) Get(ctx context.Context, tenant, id uuid.UUID) (Batch, error) {
	return getRow[Batch](ctx, r.base, "get batch", sqlBatchGet, tenant, id)
}

// List returns one page of the tenant's batches that pass the filter,
// oldest first (ordered by creation time, then id).
func (r *Batches) List(ctx context.Context, tenant uuid.UUID, filter BatchFilter, page Page) (PageOf[Batch], error) {
	if err := requireTenant(tenant); err != nil {
		return PageOf[Batch]{}, err
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return PageOf[Batch]{}, invalid("status", "%s is not a batch status", quote(string(filter.Status)))
	}
	return selectPage[Batch](ctx, r.base, "list batches", sqlBatchList, page, tenant, string(filter.Status))
}

// Cancel cancels a batch of the tenant in one statement: every queued or
// running job of it is cancelled and counted (the workers of running ones
// get [ErrLeaseLost] from their next call), and an unfinished batch
// becomes cancelled. Cancelling a cancelled batch changes nothing (the
// row is not written; its UpdatedAt stays); a batch that finished
// otherwise keeps its status, is not written either, and the call fails
// with an error matching sqladapter.ErrConflict. A missing batch matches
// sqladapter.ErrNotFound.
func (r *Batches) Cancel(ctx context.Context, tenant, id uuid.UUID) (BatchResult, error) {
	if err := requireTenant(tenant); err != nil {
		return BatchResult{}, err
	}
	var row struct {
		Batch
		WasFinished   bool `db:"was_finished"`
		JobsCancelled int  `db:"jobs_cancelled"`
	}
	if err := r.q.GetContext(ctx, &row, r.sql(sqlBatchCancel), tenant, id); err != nil {
		return BatchResult{}, wrap("cancel batch", err)
	}
	res := BatchResult{Batch: row.Batch, Finished: !row.WasFinished, JobsCancelled: row.JobsCancelled}
	if row.WasFinished && row.Status != BatchStatusCancelled && row.JobsCancelled == 0 {
		return res, classed("cancel batch", sqladapter.ErrConflict, "the batch has %s", row.Status)
	}
	return res, nil
}

// Reconcile recomputes a batch's total and counters from its jobs, and
// finishes it when all its jobs are final — repairing counters that
// drifted (a manual fix in the database, jobs deleted or added outside
// this package). It locks the batch and then counts, so job transitions
// racing with it are counted exactly once. That takes two statements in a
// READ COMMITTED transaction: inside the one the repositories were built
// over (*sqladapter.Tx, *sqlx.Tx), which should be READ COMMITTED too;
// otherwise in its own, which the querier begins — through its InTx
// method (*sqladapter.DB, or a type of yours with the same method), or
// BeginTxx (*sqlx.DB). Any other querier fails with an error before
// anything is sent, rather than run the two statements outside a
// transaction. An unfinished batch with claimed jobs becomes running; a
// finished batch keeps its status. A batch whose counters, status and
// finish are already right is not written (its UpdatedAt stays). A
// missing batch matches sqladapter.ErrNotFound.
func (r *Batches) Reconcile(ctx context.Context, tenant, id uuid.UUID) (BatchResult, error) {
	if err := requireTenant(tenant); err != nil {
		return BatchResult{}, err
	}
	var res BatchResult
	err := inTx(ctx, r.q, func(q sqladapter.Querier) error {
		var wasFinished bool
		if err := q.GetContext(ctx, &wasFinished, r.sql(sqlBatchLock), tenant, id); err != nil {
			return err
		}
		var b Batch
		if err := q.GetContext(ctx, &b, r.sql(sqlBatchReconcile), tenant, id); err != nil {
			return err
		}
		res = BatchResult{Batch: b, Finished: !wasFinished && b.Finished()}
		return nil
	})
	if err != nil {
		return BatchResult{}, wrap("reconcile batch", err)
	}
	return res, nil
}

// ClaimFinished claims the finish notice of a batch of the tenant for by
// (see [Batches] for what claims guarantee), in one statement. It returns
// the batch, and claimed true when by holds the notice: this call took it,
// or an earlier call with the same by did — so repeating a call whose
// answer was lost is safe. claimed is false when the batch has not
// finished yet, or another key holds its notice. by names the claimer,
// such as the worker's name: 1 to [MaxWorkerLen] characters. A missing
// batch (or one of another tenant) matches sqladapter.ErrNotFound.
func (r *Batches) ClaimFinished(ctx context.Context, tenant, id uuid.UUID, by string) (batch Batch, claimed bool, err error) {
	if err := requireTenant(tenant); err != nil {
		return Batch{}, false, err
	}
	if err := checkName("by", by); err != nil {
		return Batch{}, false, err
	}
	var row struct {
		Batch
		Claimed bool `db:"claimed"`
	}
	if err := r.q.GetContext(ctx, &row, r.sql(sqlBatchClaimFinished), tenant, id, by); err != nil {
		return Batch{}, false, wrap("claim batch finish", err)
	}
	return row.Batch, row.Claimed, nil
}

// ClaimFinishNotices claims for by the finish notices of up to limit (1 to
// [MaxLimit]) finished batches whose notice nobody has claimed, oldest
// finish first, in one UPDATE … RETURNING statement; concurrent callers
// skip each other's rows and never get the same batch. Only batches that
// finished at least minAge ago are taken, which leaves the worker that
// finished a batch time to claim it itself with [Batches.ClaimFinished].
// A nil tenant covers every tenant.
//
// The result also holds every batch by claimed before (within the tenant
// filter), counted in limit: a call repeated with the same by after a
// failure returns what the failed call may have claimed. Use a fresh by for
// each sweep (for example "reconciler-1:" and a random UUID), repeat it
// after an error until it answers, and do not use a ClaimFinished key.
// Nothing to claim is an empty slice, not an error.
func (r *Batches) ClaimFinishNotices(ctx context.Context, tenant *uuid.UUID, by string, limit int, minAge time.Duration) ([]Batch, error) {
	var t any // NULL: every tenant
	if tenant != nil {
		if err := requireTenant(*tenant); err != nil {
			return nil, err
		}
		t = *tenant
	}
	if err := checkName("by", by); err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxLimit {
		return nil, invalid("limit", "must be between 1 and %d, got %d", MaxLimit, limit)
	}
	if minAge < 0 {
		return nil, invalid("min_age", "must not be negative, got %v", minAge)
	}
	out := []Batch{}
	if err := r.q.SelectContext(ctx, &out, r.sql(sqlBatchClaimFinishNotices), by, limit, minAge.Milliseconds(), t); err != nil {
		return nil, wrap("claim batch finish notices", err)
	}
	return out, nil
}
