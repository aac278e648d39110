package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

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
	// MaxBatchDomains is the most domains one [Batches.Create] call takes.
	MaxBatchDomains = MaxBulkDomains
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
}

// BatchFilter narrows [Batches.List]. Zero fields keep all batches.
type BatchFilter struct {
	Status BatchStatus
}

// BatchPage is one page of [Batches.List].
type BatchPage struct {
	Items []Batch
	// NextCursor continues the list after Items (Page.Cursor); "" when
	// this page was the last.
	NextCursor string
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

const batchColumns = `id, tenant_id, name, status, total, succeeded, failed, cancelled, finished_at, created_at, updated_at`

// batchColumnsB are the columns of batches b, prefixed for joining with a job.
const batchColumnsB = `b.id AS b_id, b.tenant_id AS b_tenant_id, b.name AS b_name, b.status AS b_status, ` +
	`b.total AS b_total, b.succeeded AS b_succeeded, b.failed AS b_failed, b.cancelled AS b_cancelled, ` +
	`b.finished_at AS b_finished_at, b.created_at AS b_created_at, b.updated_at AS b_updated_at`

// sqlBatchCreate is the whole of Batches.Create: it upserts the domains
// (distinct, in sorted order, like Domains.BulkUpsert), inserts the batch
// with the number of domains as its total, and one job per domain. An
// existing domain is "updated" so that RETURNING yields it even when
// another transaction committed it after this statement began. The
// foreign keys from jobs to the new rows are checked at the end of the
// statement, when all three inserts are done.
const sqlBatchCreate = `WITH dom AS (
	INSERT INTO {schema}.domains AS d (tenant_id, domain)
	SELECT $1::uuid, n.name FROM unnest($2::text[]) AS n(name) ORDER BY n.name
	ON CONFLICT (tenant_id, domain) DO UPDATE SET updated_at = now()
	RETURNING d.id, d.domain
),
bat AS (
	INSERT INTO {schema}.batches (tenant_id, name, total)
	SELECT $1::uuid, $3, count(*) FROM dom
	RETURNING ` + batchColumns + `
),
ins AS (
	INSERT INTO {schema}.jobs (tenant_id, batch_id, domain_id, kind, payload, priority, run_at, max_attempts)
	SELECT $1::uuid, bat.id, dom.id, $4, $5::jsonb || jsonb_build_object('domain', dom.domain), $6,
		COALESCE($7::timestamptz, now()), $8
	FROM bat, dom
	ORDER BY dom.domain
)
SELECT ` + batchColumns + ` FROM bat`

const sqlBatchGet = `SELECT ` + batchColumns + `
FROM {schema}.batches
WHERE tenant_id = $1 AND id = $2`

const sqlBatchList = `SELECT ` + batchColumns + `
FROM {schema}.batches
WHERE tenant_id = $1
	AND ($2::text = '' OR status = $2::text)
	AND (created_at, id) > ($3::timestamptz, $4::uuid)
ORDER BY created_at, id
LIMIT $5 OFFSET $6`

// sqlBatchCancel cancels the batch's unfinished jobs first, then locks the
// batch (the order every job statement takes: jobs, then batches) and
// counts them. "locked" sees the batch's latest version, as in
// sqlJobTally, so was_finished is exact.
const sqlBatchCancel = `WITH cj AS (
	UPDATE {schema}.jobs SET
		state = 'cancelled',
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	WHERE tenant_id = $1 AND batch_id = $2 AND state IN ('queued', 'running')
	RETURNING id
),
n AS (
	SELECT count(*)::int AS n FROM cj
),
locked AS (
	SELECT b.id, b.finished_at
	FROM {schema}.batches b, n
	WHERE b.tenant_id = $1 AND b.id = $2
	FOR UPDATE OF b
),
bat AS (
	UPDATE {schema}.batches b SET
		cancelled = b.cancelled + n.n,
		status = CASE WHEN b.finished_at IS NULL THEN 'cancelled' ELSE b.status END,
		finished_at = COALESCE(b.finished_at, now())
	FROM locked l, n
	WHERE b.id = l.id
	RETURNING ` + batchColumnsB + `, l.finished_at IS NOT NULL AS was_finished, n.n AS jobs_cancelled
)
SELECT * FROM bat`

// sqlBatchLock starts Batches.Reconcile: it holds the batch so that no job
// statement counts into it until the transaction ends.
const sqlBatchLock = `SELECT finished_at IS NOT NULL
FROM {schema}.batches
WHERE tenant_id = $1 AND id = $2
FOR UPDATE`

// sqlBatchReconcile runs after sqlBatchLock, in the same READ COMMITTED
// transaction, so its snapshot holds every job change counted so far;
// changes still waiting for the lock are counted on top after it.
const sqlBatchReconcile = `UPDATE {schema}.batches b SET
	total = c.total,
	succeeded = c.succeeded,
	failed = c.failed,
	cancelled = c.cancelled,
	status = CASE
		WHEN b.finished_at IS NOT NULL THEN b.status
		WHEN c.succeeded + c.failed + c.cancelled < c.total THEN
			CASE WHEN b.status = 'pending' AND c.queued < c.total THEN 'running' ELSE b.status END
		WHEN c.failed = 0 AND c.cancelled = 0 THEN 'completed'
		WHEN c.succeeded = 0 AND c.failed > 0 THEN 'failed'
		WHEN c.succeeded = 0 THEN 'cancelled'
		ELSE 'completed_with_errors' END,
	finished_at = CASE
		WHEN b.finished_at IS NULL AND c.succeeded + c.failed + c.cancelled >= c.total THEN now()
		ELSE b.finished_at END
FROM (
	SELECT count(*)::int AS total,
		count(*) FILTER (WHERE state = 'queued')::int AS queued,
		count(*) FILTER (WHERE state = 'succeeded')::int AS succeeded,
		count(*) FILTER (WHERE state = 'failed')::int AS failed,
		count(*) FILTER (WHERE state = 'cancelled')::int AS cancelled
	FROM {schema}.jobs
	WHERE tenant_id = $1 AND batch_id = $2
) c
WHERE b.tenant_id = $1 AND b.id = $2
RETURNING ` + batchColumnsB

// sqlBatchClaimFinished claims the finish notice of one batch for $3. "cur"
// locks the batch and sees its latest version (as "locked" does in
// sqlJobTally); the notice is taken only when the batch is finished and
// nobody holds it. The batch comes back either way, with claimed true when
// $3 holds the notice — now, or from an earlier call with the same key.
const sqlBatchClaimFinished = `WITH cur AS (
	SELECT * FROM {schema}.batches
	WHERE tenant_id = $1 AND id = $2
	FOR UPDATE
),
claimed AS (
	UPDATE {schema}.batches b SET finish_claimed_at = now(), finish_claimed_by = $3::text
	FROM cur
	WHERE b.id = cur.id AND cur.finished_at IS NOT NULL AND cur.finish_claimed_by IS NULL
	RETURNING b.*
)
SELECT ` + batchColumns + `, finish_claimed_by IS NOT DISTINCT FROM $3::text AS claimed
FROM (
	SELECT * FROM claimed
	UNION ALL
	SELECT * FROM cur WHERE NOT EXISTS (SELECT 1 FROM claimed)
) x`

// sqlBatchClaimFinishNotices returns the batches whose notice $1 holds
// ("held", from an earlier call with the same key) and claims for $1 the
// notices of up to $2 minus that many more finished batches, oldest finish
// first, that finished at least $3 milliseconds ago, skipping rows other
// claimers hold locked; $4 NULL means every tenant. The partial index
// batches_finish_unclaimed_idx serves the search.
const sqlBatchClaimFinishNotices = `WITH held AS (
	SELECT * FROM {schema}.batches
	WHERE finish_claimed_by = $1::text AND ($4::uuid IS NULL OR tenant_id = $4::uuid)
),
claimed AS (
	UPDATE {schema}.batches SET finish_claimed_at = now(), finish_claimed_by = $1::text
	WHERE id IN (
		SELECT id FROM {schema}.batches
		WHERE finished_at IS NOT NULL AND finish_claimed_at IS NULL
			AND finished_at <= now() - $3::bigint * interval '1 millisecond'
			AND ($4::uuid IS NULL OR tenant_id = $4::uuid)
		ORDER BY finished_at, id
		LIMIT greatest($2::int - (SELECT count(*) FROM held), 0)
		FOR UPDATE SKIP LOCKED
	) AND finish_claimed_at IS NULL
	RETURNING *
)
SELECT ` + batchColumns + ` FROM (
	SELECT * FROM held
	UNION ALL
	SELECT * FROM claimed
) x
ORDER BY finished_at, id`

// Create submits a batch for the tenant: it upserts the domains (as
// [Domains.BulkUpsert] does), inserts the batch, and enqueues one job per
// distinct domain linked to the batch and the domain — all in one
// statement, so it writes everything or nothing whatever the size, on a
// *sqladapter.DB or inside a transaction. Domains are normalised with
// [NormalizeDomain]; forms of one name collapse into one job. Up to
// [MaxBatchDomains] names; an invalid one rejects the whole batch before
// anything is written, with a *[ValidationError] for field "domains[i]".
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
	switch {
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return Batch{}, invalid("name", "is not valid UTF-8 text")
	case utf8.RuneCountInString(name) > MaxBatchNameLen:
		return Batch{}, invalid("name", "is longer than %d characters", MaxBatchNameLen)
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
	var b Batch
	err = r.q.GetContext(ctx, &b, r.sql(sqlBatchCreate),
		tenant, textArray(names), name, kind, payload, opts.Priority, runAt, maxAttempts)
	if err != nil {
		return Batch{}, wrap("create batch", err)
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
func (r *Batches) List(ctx context.Context, tenant uuid.UUID, filter BatchFilter, page Page) (BatchPage, error) {
	if err := requireTenant(tenant); err != nil {
		return BatchPage{}, err
	}
	if filter.Status != "" && !filter.Status.Valid() {
		return BatchPage{}, invalid("status", "%s is not a batch status", quote(string(filter.Status)))
	}
	items, next, err := selectPage[Batch](ctx, r.base, "list batches", sqlBatchList, page,
		tenant, string(filter.Status))
	if err != nil {
		return BatchPage{}, err
	}
	return BatchPage{Items: items, NextCursor: next}, nil
}

// Cancel cancels a batch of the tenant in one statement: every queued or
// running job of it is cancelled and counted (the workers of running ones
// get [ErrLeaseLost] from their next call), and an unfinished batch
// becomes cancelled. Cancelling a cancelled batch changes nothing; a
// batch that finished otherwise keeps its status, and the call fails
// with an error matching sqladapter.ErrConflict. A missing batch matches
// sqladapter.ErrNotFound.
func (r *Batches) Cancel(ctx context.Context, tenant, id uuid.UUID) (BatchResult, error) {
	if err := requireTenant(tenant); err != nil {
		return BatchResult{}, err
	}
	var row struct {
		batchJoin
		WasFinished   bool `db:"was_finished"`
		JobsCancelled int  `db:"jobs_cancelled"`
	}
	if err := r.q.GetContext(ctx, &row, r.sql(sqlBatchCancel), tenant, id); err != nil {
		return BatchResult{}, wrap("cancel batch", err)
	}
	b := transitionRow{batchJoin: row.batchJoin}.transition().Batch
	if b == nil {
		return BatchResult{}, errors.New("cancel batch: no batch returned")
	}
	res := BatchResult{Batch: *b, Finished: !row.WasFinished, JobsCancelled: row.JobsCancelled}
	if row.WasFinished && b.Status != BatchStatusCancelled && row.JobsCancelled == 0 {
		return res, classed("cancel batch", sqladapter.ErrConflict, "the batch has %s", b.Status)
	}
	return res, nil
}

// Reconcile recomputes a batch's total and counters from its jobs, and
// finishes it when all its jobs are final — repairing counters that
// drifted (a manual fix in the database, jobs deleted or added outside
// this package). It locks the batch and then counts, so job transitions
// racing with it are counted exactly once. That takes two statements in a
// READ COMMITTED transaction: on a *sqladapter.DB, its own through InTx;
// on a *sqlx.DB, one it begins; any other querier (a *sqladapter.Tx,
// a *sqlx.Tx) is taken to be a transaction already, which it joins. An
// unfinished batch with claimed jobs becomes running; a finished batch
// keeps its status. A missing batch matches sqladapter.ErrNotFound.
func (r *Batches) Reconcile(ctx context.Context, tenant, id uuid.UUID) (BatchResult, error) {
	if err := requireTenant(tenant); err != nil {
		return BatchResult{}, err
	}
	var res BatchResult
	err := runInTx(ctx, r.q, func(q sqladapter.Querier) error {
		var wasFinished bool
		if err := q.GetContext(ctx, &wasFinished, r.sql(sqlBatchLock), tenant, id); err != nil {
			return err
		}
		var row transitionRow
		if err := q.GetContext(ctx, &row.batchJoin, r.sql(sqlBatchReconcile), tenant, id); err != nil {
			return err
		}
		b := row.transition().Batch
		if b == nil {
			return errors.New("no batch returned")
		}
		res = BatchResult{Batch: *b, Finished: !wasFinished && b.FinishedAt != nil}
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

// runInTx runs fn in a READ COMMITTED transaction on q: through InTx
// (retrying serialization failures and deadlocks) for a *sqladapter.DB,
// with BeginTxx for another handle that can begin one (*sqlx.DB). Any
// other querier (*sqladapter.Tx, *sqlx.Tx) is taken to be a transaction
// already, and fn runs in it; it should be READ COMMITTED too — under
// REPEATABLE READ or SERIALIZABLE, racing changes fail it with
// sqladapter.ErrSerialization instead of waiting.
func runInTx(ctx context.Context, q sqladapter.Querier, fn func(q sqladapter.Querier) error) error {
	switch h := q.(type) {
	case *sqladapter.DB:
		return h.InTx(ctx, func(tx *sqladapter.Tx) error { return fn(tx) },
			sqladapter.WithIsolation(sql.LevelReadCommitted))
	case interface {
		BeginTxx(context.Context, *sql.TxOptions) (*sqlx.Tx, error)
	}:
		tx, err := h.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	default:
		return fn(q)
	}
}
