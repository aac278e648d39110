package repo

import "strings"

// The statements of Jobs. Each is a constant with a {schema} placeholder
// (see base.sql).

const jobColumns = `id, tenant_id, batch_id, domain_id, kind, payload, state, priority, run_at, attempts, max_attempts, ` +
	`locked_by, lease_expires_at, progress, COALESCE(result, 'null'::jsonb) AS result, last_error, finished_at, created_at, updated_at`

// Each job-to-final statement names the jobs it changed "fin" (with
// tenant_id, batch_id and state) and appends sqlJobTally, which counts them
// in their batches in the same statement:
//
//   - "locked" locks the batches, in id order so that statements touching
//     several batches cannot deadlock, and sees each as it is now: under
//     READ COMMITTED a row lock waits for a concurrent change to commit and
//     then returns the row's latest version;
//   - "bat" adds the counts to that latest version. When the counters reach
//     the total, it sets the final status and finished_at;
//     b_just_finished is true only for the statement that did so, because
//     the lock orders the statements touching one batch, and only the one
//     that finds finished_at NULL and reaches the total sets it.
//
// The final status: completed when every job succeeded; failed when none
// succeeded and some failed; cancelled when every job was cancelled;
// completed_with_errors otherwise.
const sqlJobTally = `,
tally AS (
	SELECT tenant_id, batch_id,
		count(*) FILTER (WHERE state = 'succeeded')::int AS succeeded,
		count(*) FILTER (WHERE state = 'failed')::int AS failed,
		count(*) FILTER (WHERE state = 'cancelled')::int AS cancelled
	FROM fin
	WHERE batch_id IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled')
	GROUP BY tenant_id, batch_id
),
locked AS (
	SELECT b.id, b.finished_at
	FROM {schema}.batches b
	WHERE (b.tenant_id, b.id) IN (SELECT tenant_id, batch_id FROM tally)
	ORDER BY b.id
	FOR UPDATE
),
bat AS (
	UPDATE {schema}.batches b SET
		succeeded = b.succeeded + t.succeeded,
		failed = b.failed + t.failed,
		cancelled = b.cancelled + t.cancelled,
		status = CASE
			WHEN b.finished_at IS NOT NULL
				OR b.succeeded + t.succeeded + b.failed + t.failed + b.cancelled + t.cancelled < b.total THEN b.status
			WHEN b.failed + t.failed = 0 AND b.cancelled + t.cancelled = 0 THEN 'completed'
			WHEN b.succeeded + t.succeeded = 0 AND b.failed + t.failed > 0 THEN 'failed'
			WHEN b.succeeded + t.succeeded = 0 THEN 'cancelled'
			ELSE 'completed_with_errors' END,
		finished_at = CASE
			WHEN b.finished_at IS NULL
				AND b.succeeded + t.succeeded + b.failed + t.failed + b.cancelled + t.cancelled >= b.total THEN now()
			ELSE b.finished_at END
	FROM tally t, locked l
	WHERE b.tenant_id = t.tenant_id AND b.id = t.batch_id AND l.id = b.id
	RETURNING b.*, (l.finished_at IS NULL AND b.finished_at IS NOT NULL) AS b_just_finished
)`

// sqlJobTallyResult ends the statements that change one job: the job, its
// batch as one JSON object (to_jsonb of the row; NULL when the job was not
// counted in a batch), and whether the statement finished the batch.
const sqlJobTallyResult = `
SELECT fin.*, to_jsonb(bat) AS batch, COALESCE(bat.b_just_finished, false) AS b_just_finished
FROM fin LEFT JOIN bat ON true`

// sqlJobEnqueue inserts jobs from parallel arrays in one statement. Jobs
// joining a batch grow its total; the batches are locked first (in id
// order) and must all exist in the tenant unfinished, else nothing is
// written and no row returned. A job's id is its element of $9 when the
// caller chose them ($9 is empty otherwise, and unnest pads it with NULLs),
// else drawn in "input" (so that rows come back in input order). When a chosen id is already taken by a committed job, nothing is
// written and no row returned (Jobs.enqueue then looks the ids up); one
// taken by a job still uncommitted is waited for by ON CONFLICT, and
// skipped. Batch totals grow by the jobs actually inserted.
const sqlJobEnqueue = `WITH input AS (
	SELECT COALESCE(t.id, gen_random_uuid()) AS id, t.ord, t.kind, t.payload::jsonb AS payload,
		t.priority, COALESCE(NULLIF(t.run_at, '')::timestamptz, now()) AS run_at, t.max_attempts,
		NULLIF(t.batch_id, '')::uuid AS batch_id, NULLIF(t.domain_id, '')::uuid AS domain_id
	FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[], $6::int4[], $7::text[], $8::text[], $9::uuid[])
		WITH ORDINALITY AS t(kind, payload, priority, run_at, max_attempts, batch_id, domain_id, id, ord)
),
taken AS (
	SELECT count(*) AS n FROM {schema}.jobs WHERE id = ANY($9::uuid[])
),
grow AS (
	SELECT batch_id FROM input WHERE batch_id IS NOT NULL GROUP BY batch_id
),
open AS (
	SELECT b.id FROM {schema}.batches b
	WHERE b.tenant_id = $1 AND b.id IN (SELECT batch_id FROM grow) AND b.finished_at IS NULL
	ORDER BY b.id
	FOR UPDATE
),
ok AS (
	SELECT (SELECT count(*) FROM open) = (SELECT count(*) FROM grow) AND taken.n = 0 AS ok FROM taken
),
ins AS (
	INSERT INTO {schema}.jobs (id, tenant_id, batch_id, domain_id, kind, payload, priority, run_at, max_attempts)
	SELECT i.id, $1, i.batch_id, i.domain_id, i.kind, i.payload, i.priority, i.run_at, i.max_attempts
	FROM input i, ok
	WHERE ok.ok
	ORDER BY i.ord
	ON CONFLICT (id) DO NOTHING
	RETURNING ` + jobColumns + `
),
grown AS (
	UPDATE {schema}.batches b SET total = b.total + g.n
	FROM (SELECT batch_id, count(*)::int AS n FROM ins WHERE batch_id IS NOT NULL GROUP BY batch_id) g
	WHERE b.tenant_id = $1 AND b.id = g.batch_id
)
SELECT ins.* FROM ins JOIN input i ON i.id = ins.id ORDER BY i.ord`

// sqlJobEnqueueFresh is sqlJobEnqueue for jobs whose ids it draws itself,
// which cannot conflict: without ON CONFLICT, whose speculative insertion
// made an enqueue of 10,000 jobs 8–14% slower.
var sqlJobEnqueueFresh = strings.Replace(sqlJobEnqueue, "\n\tON CONFLICT (id) DO NOTHING", "", 1)

// sqlJobsByID reads jobs by id in any tenant: a repeated Enqueue checks
// the jobs it found are the ones it asked for.
const sqlJobsByID = `SELECT ` + jobColumns + `
FROM {schema}.jobs
WHERE id = ANY($1::uuid[])`

// The claim statements take up to $1 runnable jobs in priority, then run_at
// order (served by the partial indexes jobs_runnable_idx and
// jobs_tenant_runnable_idx), skipping rows other claimers hold, and start
// the jobs' batches that were still pending (locked in id order).
const sqlJobClaimTail = `
		ORDER BY priority DESC, run_at, id
		LIMIT $1
		FOR UPDATE SKIP LOCKED
	)
	RETURNING ` + jobColumns + `
),
started AS (
	UPDATE {schema}.batches SET status = 'running'
	WHERE id IN (
		SELECT b.id FROM {schema}.batches b
		WHERE b.status = 'pending' AND (b.tenant_id, b.id) IN (SELECT tenant_id, batch_id FROM claimed)
		ORDER BY b.id
		FOR UPDATE
	) AND status = 'pending'
)
SELECT ` + jobColumns + ` FROM claimed ORDER BY priority DESC, run_at, id`

const sqlJobClaimHead = `WITH claimed AS (
	UPDATE {schema}.jobs SET
		state = 'running',
		locked_by = $2,
		lease_expires_at = now() + $3::bigint * interval '1 millisecond',
		attempts = attempts + 1
	WHERE id IN (
		SELECT id FROM {schema}.jobs`

const sqlJobClaim = sqlJobClaimHead + `
		WHERE state = 'queued' AND run_at <= now()` + sqlJobClaimTail

const sqlJobClaimTenant = sqlJobClaimHead + `
		WHERE tenant_id = $4 AND state = 'queued' AND run_at <= now()` + sqlJobClaimTail

const sqlJobHeartbeat = `UPDATE {schema}.jobs SET lease_expires_at = now() + $3::bigint * interval '1 millisecond'
WHERE id = $1 AND state = 'running' AND locked_by = $2
RETURNING lease_expires_at`

const sqlJobSetProgress = `UPDATE {schema}.jobs SET progress = $3
WHERE id = $1 AND state = 'running' AND locked_by = $2`

const sqlJobSetResult = `UPDATE {schema}.jobs SET result = $3::jsonb
WHERE id = $1 AND state = 'running' AND locked_by = $2`

const sqlJobComplete = `WITH fin AS (
	UPDATE {schema}.jobs SET
		state = 'succeeded',
		result = COALESCE($3::jsonb, result),
		progress = 1,
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	WHERE id = $1 AND state = 'running' AND locked_by = $2
	RETURNING ` + jobColumns + `
)` + sqlJobTally + sqlJobTallyResult

// sqlJobCompleteMany is sqlJobComplete for many jobs of one worker ($1):
// $2 their ids, $3 their results as JSON text (an empty one keeps the stored result),
// in input order. "owned" locks the jobs in id order — as Batches.Cancel
// does, and before any batch, as every job statement does — so that it
// cannot deadlock with them; jobs no longer running under $1 drop out.
// sqlJobTally then counts all of them, batch by batch, in one update of
// each batch; jobs without a batch take no part in it (no batch is read
// or locked for them). The batch that this statement finished is reported
// on one job of it: the last in input order.
const sqlJobCompleteMany = `WITH input AS (
	SELECT t.job_id, NULLIF(t.new_result, '')::jsonb AS new_result, t.ord
	FROM unnest($2::uuid[], $3::text[]) WITH ORDINALITY AS t(job_id, new_result, ord)
),
owned AS (
	SELECT j.id AS owned_id FROM {schema}.jobs j
	WHERE j.id IN (SELECT job_id FROM input) AND j.state = 'running' AND j.locked_by = $1
	ORDER BY j.id
	FOR UPDATE
),
fin AS (
	UPDATE {schema}.jobs j SET
		state = 'succeeded',
		result = COALESCE(i.new_result, j.result),
		progress = 1,
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	FROM owned o JOIN input i ON i.job_id = o.owned_id
	WHERE j.id = o.owned_id
	RETURNING ` + jobColumns + `, i.ord
)` + sqlJobTally + `
SELECT fin.*, to_jsonb(bat) AS batch,
	COALESCE(bat.b_just_finished AND fin.ord = max(fin.ord) OVER (PARTITION BY fin.batch_id), false) AS b_just_finished
FROM fin LEFT JOIN bat ON bat.id = fin.batch_id
ORDER BY fin.ord`

// sqlJobFail requeues with the backoff described at RetryBackoffBase:
// attempts is at least 1 for a running job; the exponent is capped so the
// power cannot overflow.
const sqlJobFail = `WITH fin AS (
	UPDATE {schema}.jobs SET
		state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
		run_at = CASE WHEN attempts < max_attempts
			THEN now() + least($4::bigint * power(2::float8, least(attempts - 1, 40)), $5::bigint)
				* (0.5 + random() / 2) * interval '1 millisecond'
			ELSE run_at END,
		progress = CASE WHEN attempts < max_attempts THEN 0 ELSE progress END,
		last_error = $3,
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END
	WHERE id = $1 AND state = 'running' AND locked_by = $2
	RETURNING ` + jobColumns + `
)` + sqlJobTally + sqlJobTallyResult

const sqlJobCancel = `WITH fin AS (
	UPDATE {schema}.jobs SET
		state = 'cancelled',
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	WHERE tenant_id = $1 AND id = $2 AND state IN ('queued', 'running')
	RETURNING ` + jobColumns + `
)` + sqlJobTally + sqlJobTallyResult

// sqlJobRescue handles every running job whose lease expired, skipping rows
// locked right now (their owner is finishing them). SET expressions see
// the old row, so last_error can name the worker that lost the lease.
const sqlJobRescue = `WITH fin AS (
	UPDATE {schema}.jobs SET
		state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
		run_at = CASE WHEN attempts < max_attempts THEN now() ELSE run_at END,
		progress = CASE WHEN attempts < max_attempts THEN 0 ELSE progress END,
		last_error = 'lease expired: worker ' || locked_by || ' stopped renewing it',
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END
	WHERE id IN (
		SELECT id FROM {schema}.jobs
		WHERE state = 'running' AND lease_expires_at < now()
		FOR UPDATE SKIP LOCKED
	)
	RETURNING id, tenant_id, batch_id, state
)` + sqlJobTally + `
SELECT id, state, false AS batch FROM fin
UNION ALL
SELECT id, status, true FROM bat WHERE b_just_finished`

const sqlJobGet = `SELECT ` + jobColumns + `
FROM {schema}.jobs
WHERE tenant_id = $1 AND id = $2`

// sqlJobList filters optionally: an empty state or kind, or a NULL batch,
// keeps all. Statements are planned with their arguments (no server-side
// prepared statements), so the unused conditions fold away.
const sqlJobList = `SELECT ` + jobColumns + `
FROM {schema}.jobs
WHERE tenant_id = $1
	AND ($2::text = '' OR state = $2::text)
	AND ($3::uuid IS NULL OR batch_id = $3::uuid)
	AND ($4::text = '' OR kind = $4::text)
	AND (created_at, id) > ($5::timestamptz, $6::uuid)
ORDER BY created_at, id
LIMIT $7 OFFSET $8`

// sqlJobNext runs the function jobs_next (migration 00003), whose cached
// plan finishes a worker's jobs, claims its next ones and counts the
// finished jobs in their batches, in one statement. Its rows are described
// there: what = 'job', 'lost' or 'batch'.
const sqlJobNext = `SELECT what, id, tenant_id, batch_id, domain_id, kind, payload, state, priority, run_at, attempts,
	max_attempts, locked_by, lease_expires_at, progress, result, last_error, finished_at, created_at, updated_at, batch
FROM {schema}.jobs_next($1, $2::uuid[], $3::text[], $4::text[], $5, $6, $7::uuid, $8, $9)`
