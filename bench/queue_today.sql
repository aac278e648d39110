-- Today's job statements (repo at d4d5329, before issue 12), one job per claim and
-- one Complete per job, as the project's worker loop ran them: the anchor for the
-- "≥ 5× today" goal. Jobs come from batches (Batches.Create), so the batch tally runs.
--
--   pgbench -n -M extended -c 8 -j 2 -T 10 -D n=1 -D lease=30000 -D result='{"ok":1}' \
--       -f bench/queue_today.sql "$POOLSAFE_TEST_TX_URL"
--
-- (schema poolsafe_bench, filled by `go run ./bench`; see bench/README.md)
WITH claimed AS (
	UPDATE poolsafe_bench.jobs SET
		state = 'running',
		locked_by = :client_id,
		lease_expires_at = now() + :lease::bigint * interval '1 millisecond',
		attempts = attempts + 1
	WHERE id IN (
		SELECT id FROM poolsafe_bench.jobs
		WHERE state = 'queued' AND run_at <= now()
		ORDER BY priority DESC, run_at, id
		LIMIT :n
		FOR UPDATE SKIP LOCKED
	)
	RETURNING id, tenant_id, batch_id, domain_id, kind, payload, state, priority, run_at, attempts, max_attempts, locked_by, lease_expires_at, progress, COALESCE(result, 'null'::jsonb) AS result, last_error, finished_at, created_at, updated_at
),
started AS (
	UPDATE poolsafe_bench.batches SET status = 'running'
	WHERE id IN (
		SELECT b.id FROM poolsafe_bench.batches b
		WHERE b.status = 'pending' AND (b.tenant_id, b.id) IN (SELECT tenant_id, batch_id FROM claimed)
		ORDER BY b.id
		FOR UPDATE
	) AND status = 'pending'
)
SELECT id, tenant_id, batch_id, domain_id, kind, payload, state, priority, run_at, attempts, max_attempts, locked_by, lease_expires_at, progress, COALESCE(result, 'null'::jsonb) AS result, last_error, finished_at, created_at, updated_at FROM claimed ORDER BY priority DESC, run_at, id \gset c_
WITH fin AS (
	UPDATE poolsafe_bench.jobs SET
		state = 'succeeded',
		result = COALESCE(:result::jsonb, result),
		progress = 1,
		locked_by = NULL,
		lease_expires_at = NULL,
		finished_at = now()
	WHERE id = :c_id AND state = 'running' AND locked_by = :client_id
	RETURNING id, tenant_id, batch_id, domain_id, kind, payload, state, priority, run_at, attempts, max_attempts, locked_by, lease_expires_at, progress, COALESCE(result, 'null'::jsonb) AS result, last_error, finished_at, created_at, updated_at
),
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
	FROM poolsafe_bench.batches b
	WHERE (b.tenant_id, b.id) IN (SELECT tenant_id, batch_id FROM tally)
	ORDER BY b.id
	FOR UPDATE
),
bat AS (
	UPDATE poolsafe_bench.batches b SET
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
)
SELECT fin.*, to_jsonb(bat) AS batch, COALESCE(bat.b_just_finished, false) AS b_just_finished
FROM fin LEFT JOIN bat ON true;
