package repo

// The statements of Batches. Each is a constant with a {schema}
// placeholder (see base.sql).

const batchColumns = `id, tenant_id, name, status, total, succeeded, failed, cancelled, finished_at, created_at, updated_at`

// sqlBatchCreate is the whole of Batches.Create: it inserts the batch with
// the number of (distinct) domains as its total, upserts the domains (in
// sorted order, like Domains.BulkUpsert) and inserts one job per domain.
// The batch's id is $9 when the caller chose it, else a new one; when a
// batch with that id exists, the statement writes nothing and returns no
// row (ON CONFLICT waits for an uncommitted insert of the same id to end
// first, so a repeat never writes a second batch). An existing domain is
// "updated" so that RETURNING yields it even when another transaction
// committed it after this statement began. The foreign keys from jobs to
// the new rows are checked at the end of the statement, when all three
// inserts are done.
const sqlBatchCreate = `WITH bat AS (
	INSERT INTO {schema}.batches (id, tenant_id, name, total)
	VALUES (COALESCE($9::uuid, gen_random_uuid()), $1::uuid, $3, cardinality($2::text[]))
	ON CONFLICT (id) DO NOTHING
	RETURNING ` + batchColumns + `
),
dom AS (
	INSERT INTO {schema}.domains AS d (tenant_id, domain)
	SELECT $1::uuid, n.name FROM unnest($2::text[]) AS n(name)
	WHERE EXISTS (SELECT FROM bat)
	ORDER BY n.name
	ON CONFLICT (tenant_id, domain) DO UPDATE SET updated_at = now()
	RETURNING d.id, d.domain
),
ins AS (
	INSERT INTO {schema}.jobs (tenant_id, batch_id, domain_id, kind, payload, priority, run_at, max_attempts)
	SELECT $1::uuid, bat.id, dom.id, $4, $5::jsonb || jsonb_build_object('domain', dom.domain), $6,
		COALESCE($7::timestamptz, now()), $8
	FROM bat, dom
	ORDER BY dom.domain
)
SELECT ` + batchColumns + ` FROM bat`

// sqlBatchHasDomains counts the names of $3 that have a job in the batch:
// a repeated Create checks that the batch it found is the one it asked for.
const sqlBatchHasDomains = `SELECT count(DISTINCT d.domain)::int
FROM {schema}.jobs j JOIN {schema}.domains d ON d.id = j.domain_id
WHERE j.tenant_id = $1 AND j.batch_id = $2 AND d.domain = ANY($3::text[])`

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

// sqlBatchCancel cancels the batch's unfinished jobs first — locked in id
// order, as sqlJobCompleteMany locks its jobs, so the two cannot deadlock
// — then locks the batch (the order every job statement takes: jobs, then
// batches) and counts them. "locked" sees the batch's latest version, as
// in sqlJobTally, so was_finished is exact. A finished batch none of whose
// jobs was cancelled is not written (its updated_at stays): it comes back
// from "locked" as it is.
const sqlBatchCancel = `WITH cj AS (
	UPDATE {schema}.jobs SET
		state = 'cancelled',
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	WHERE id IN (
		SELECT id FROM {schema}.jobs
		WHERE tenant_id = $1 AND batch_id = $2 AND state IN ('queued', 'running')
		ORDER BY id
		FOR UPDATE
	) AND state IN ('queued', 'running')
	RETURNING id
),
n AS (
	SELECT count(*)::int AS n FROM cj
),
locked AS (
	SELECT b.*
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
	WHERE b.id = l.id AND (l.finished_at IS NULL OR n.n > 0)
	RETURNING b.*, l.finished_at IS NOT NULL AS was_finished, n.n AS jobs_cancelled
)
SELECT ` + batchColumns + `, was_finished, jobs_cancelled FROM bat
UNION ALL
SELECT ` + batchColumns + `, true, 0 FROM locked WHERE NOT EXISTS (SELECT FROM bat)`

// sqlBatchLock starts Batches.Reconcile: it holds the batch so that no job
// statement counts into it until the transaction ends.
const sqlBatchLock = `SELECT finished_at IS NOT NULL
FROM {schema}.batches
WHERE tenant_id = $1 AND id = $2
FOR UPDATE`

// sqlBatchReconcile runs after sqlBatchLock, in the same READ COMMITTED
// transaction, so its snapshot holds every job change counted so far and
// the batch's latest version; changes still waiting for the lock are
// counted on top after it. A batch whose counters, status and finish are
// already right is not written (its updated_at stays): it comes back from
// "cur" as it is.
const sqlBatchReconcile = `WITH cur AS (
	SELECT * FROM {schema}.batches
	WHERE tenant_id = $1 AND id = $2
),
c AS (
	SELECT count(*)::int AS total,
		count(*) FILTER (WHERE state = 'queued')::int AS queued,
		count(*) FILTER (WHERE state = 'succeeded')::int AS succeeded,
		count(*) FILTER (WHERE state = 'failed')::int AS failed,
		count(*) FILTER (WHERE state = 'cancelled')::int AS cancelled
	FROM {schema}.jobs
	WHERE tenant_id = $1 AND batch_id = $2
),
want AS (
	SELECT cur.id, c.total, c.succeeded, c.failed, c.cancelled,
		CASE
			WHEN cur.finished_at IS NOT NULL THEN cur.status
			WHEN c.succeeded + c.failed + c.cancelled < c.total THEN
				CASE WHEN cur.status = 'pending' AND c.queued < c.total THEN 'running' ELSE cur.status END
			WHEN c.failed = 0 AND c.cancelled = 0 THEN 'completed'
			WHEN c.succeeded = 0 AND c.failed > 0 THEN 'failed'
			WHEN c.succeeded = 0 THEN 'cancelled'
			ELSE 'completed_with_errors' END AS status,
		CASE
			WHEN cur.finished_at IS NULL AND c.succeeded + c.failed + c.cancelled >= c.total THEN now()
			ELSE cur.finished_at END AS finished_at
	FROM cur, c
),
fixed AS (
	UPDATE {schema}.batches b SET
		total = w.total,
		succeeded = w.succeeded,
		failed = w.failed,
		cancelled = w.cancelled,
		status = w.status,
		finished_at = w.finished_at
	FROM want w
	WHERE b.id = w.id
		AND (b.total, b.succeeded, b.failed, b.cancelled, b.status, b.finished_at)
			IS DISTINCT FROM (w.total, w.succeeded, w.failed, w.cancelled, w.status, w.finished_at)
	RETURNING b.*
)
SELECT ` + batchColumns + ` FROM fixed
UNION ALL
SELECT ` + batchColumns + ` FROM cur WHERE NOT EXISTS (SELECT FROM fixed)`

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
