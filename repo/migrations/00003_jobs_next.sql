-- The worker's fast path (repo.Jobs.Next): report the jobs a worker finished
-- and claim its next ones in one statement, run by a PL/pgSQL function so
-- that its plan is cached per server connection. That is safe behind a
-- transaction pooler: no named statement is left on a connection a client
-- could later miss — every server connection has the function, and its
-- cached plan is the same for every client.
--
-- And the touch triggers fire only for statements that do not set
-- updated_at themselves: a PL/pgSQL call per row was a fifth of a job's
-- server time. A statement that sets updated_at to a value other than the
-- old one now keeps that value; every statement of this package sets it to
-- now(), as the trigger does.

-- +goose Up
DROP TRIGGER jobs_touch ON jobs;
CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs FOR EACH ROW
	WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at) EXECUTE FUNCTION touch_updated_at();
DROP TRIGGER batches_touch ON batches;
CREATE TRIGGER batches_touch BEFORE UPDATE ON batches FOR EACH ROW
	WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at) EXECUTE FUNCTION touch_updated_at();

-- jobs_next finishes the jobs p_ids that are running under p_worker — each
-- completed with p_results[i] (NULL or '' keeps the stored result) when
-- p_errors[i] is NULL or '', else failed with that message (queued again
-- after the backoff of repo.RetryBackoffBase while attempts remain) — then
-- claims up to p_n runnable jobs (of tenant p_tenant; NULL: any) for
-- p_worker with a lease of p_lease_ms, and counts the finished jobs in
-- their batches, finishing a batch when it counted the last one; a pending
-- batch whose first job it claimed becomes running. All of it is one
-- transaction: the caller's statement. Rows:
--   what = 'job'   a claimed job (the job columns);
--   what = 'lost'  id of a p_ids job not running under p_worker: nothing changed;
--   what = 'batch' id and batch (to_jsonb of the row) of a batch this call finished.
--
-- Locks follow the order of every job statement: the finished jobs in id
-- order, then the batches in id order, once. Claimed jobs are taken with
-- SKIP LOCKED and wait for nobody; running batches are not locked by a
-- claim. The batches are locked by one statement and counted by the next:
-- counting starts from a snapshot taken after the locks were granted, so it
-- reads each batch's latest version directly. (Locking and counting in one
-- statement, as the single-job statements do, re-evaluates the counting
-- plan for every batch row a concurrent call updated meanwhile — with every
-- worker finishing jobs of the same batch, that tripled a job's server time.)
--
-- force_generic_plan: each statement's plan is made once per connection. A
-- custom plan would be made per call (the LIMIT of a custom plan looks far
-- cheaper), and planning was half of a job's server time. A generic plan
-- does not know n, the number of ids or the tenant, so the join settings
-- keep it to the plan every call wants whatever the sizes (all sets here
-- hold at most MaxClaimJobs rows): index look-ups by key in nested loops,
-- never a scan of batches or jobs. The claims read the partial indexes
-- jobs_runnable_idx and jobs_tenant_runnable_idx in order (the tenant's
-- claim orders by tenant_id first, a no-op under its filter, so that no
-- estimate of how many jobs a tenant has can turn it to the global index).
-- +goose StatementBegin
CREATE FUNCTION jobs_next(p_worker text, p_ids uuid[], p_results text[], p_errors text[], p_n int,
	p_lease_ms bigint, p_tenant uuid, p_backoff_ms bigint, p_backoff_max_ms bigint)
RETURNS TABLE (what text, id uuid, tenant_id uuid, batch_id uuid, domain_id uuid, kind text, payload jsonb,
	state text, priority integer, run_at timestamptz, attempts integer, max_attempts integer, locked_by text,
	lease_expires_at timestamptz, progress double precision, result jsonb, last_error text,
	finished_at timestamptz, created_at timestamptz, updated_at timestamptz, batch jsonb)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $fn$
#variable_conflict use_column
DECLARE
	v_done uuid[];         -- the finished jobs
	v_fin_batches uuid[];  -- their batches, one entry per job reaching a final state
	v_fin_states text[];   -- and that state
	v_tally uuid[];        -- the batches to count in, in id order,
	v_succeeded int[];     -- with their succeeded
	v_failed int[];        -- and failed jobs
	v_claimed uuid[];      -- the claimed jobs
	v_starting uuid[];     -- their batches
	v_locked uuid[];       -- the batches locked, in id order,
	v_open boolean[];      -- and whether each was unfinished when locked
BEGIN
	IF cardinality(p_ids) > 0 THEN
		WITH owned AS (
			-- locked_by is set exactly while a job is running (jobs_lease_check):
			-- no state condition, which would offer jobs_lease_idx, a scan of
			-- every running job
			SELECT j.id, NULLIF(i.res, '')::jsonb AS res, NULLIF(i.err, '') AS err
			FROM unnest(p_ids, p_results, p_errors) AS i(job_id, res, err) JOIN jobs j ON j.id = i.job_id
			WHERE j.locked_by = p_worker
			ORDER BY j.id
			FOR UPDATE OF j
		),
		fin AS (
			UPDATE jobs j SET
				state = CASE WHEN o.err IS NULL THEN 'succeeded' WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
				result = CASE WHEN o.err IS NULL THEN COALESCE(o.res, j.result) ELSE j.result END,
				progress = CASE WHEN o.err IS NULL THEN 1 WHEN j.attempts < j.max_attempts THEN 0 ELSE j.progress END,
				run_at = CASE WHEN o.err IS NOT NULL AND j.attempts < j.max_attempts
					THEN now() + least(p_backoff_ms * power(2::float8, least(j.attempts - 1, 40)), p_backoff_max_ms)
						* (0.5 + random() / 2) * interval '1 millisecond'
					ELSE j.run_at END,
				last_error = COALESCE(o.err, j.last_error),
				locked_by = NULL,
				lease_expires_at = NULL,
				finished_at = CASE WHEN o.err IS NOT NULL AND j.attempts < j.max_attempts THEN NULL ELSE now() END,
				updated_at = now()
			FROM owned o
			WHERE j.id = o.id
			RETURNING j.id, j.batch_id, j.state
		)
		SELECT COALESCE(array_agg(f.id), '{}'),
			array_agg(f.batch_id) FILTER (WHERE f.batch_id IS NOT NULL AND f.state IN ('succeeded', 'failed')),
			array_agg(f.state) FILTER (WHERE f.batch_id IS NOT NULL AND f.state IN ('succeeded', 'failed'))
		INTO v_done, v_fin_batches, v_fin_states
		FROM fin f;

		RETURN QUERY
		SELECT 'lost'::text, x.id, NULL::uuid, NULL::uuid, NULL::uuid, NULL::text, NULL::jsonb, NULL::text,
			NULL::integer, NULL::timestamptz, NULL::integer, NULL::integer, NULL::text, NULL::timestamptz,
			NULL::double precision, NULL::jsonb, NULL::text, NULL::timestamptz, NULL::timestamptz,
			NULL::timestamptz, NULL::jsonb
		FROM unnest(p_ids) AS x(id)
		WHERE NOT x.id = ANY(v_done);

		IF v_fin_batches IS NOT NULL THEN
			SELECT array_agg(t.b ORDER BY t.b), array_agg(t.s ORDER BY t.b), array_agg(t.f ORDER BY t.b)
			INTO v_tally, v_succeeded, v_failed
			FROM (
				SELECT u.b, count(*) FILTER (WHERE u.st = 'succeeded')::int AS s,
					count(*) FILTER (WHERE u.st = 'failed')::int AS f
				FROM unnest(v_fin_batches, v_fin_states) AS u(b, st)
				GROUP BY u.b
			) t;
		END IF;
	END IF;

	IF p_n > 0 THEN
		WITH cand AS (
			SELECT j.id FROM jobs j
			WHERE p_tenant IS NULL AND j.state = 'queued' AND j.run_at <= now()
			ORDER BY j.priority DESC, j.run_at, j.id
			LIMIT p_n
			FOR UPDATE SKIP LOCKED
		),
		cand_tenant AS (
			SELECT j.id FROM jobs j
			WHERE p_tenant IS NOT NULL AND j.tenant_id = p_tenant AND j.state = 'queued' AND j.run_at <= now()
			ORDER BY j.tenant_id, j.priority DESC, j.run_at, j.id -- jobs_tenant_runnable_idx's order
			LIMIT p_n
			FOR UPDATE SKIP LOCKED
		),
		claimed AS (
			UPDATE jobs j SET
				state = 'running',
				locked_by = p_worker,
				lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
				attempts = j.attempts + 1,
				updated_at = now()
			WHERE j.id IN (SELECT c.id FROM cand c UNION ALL SELECT c.id FROM cand_tenant c)
			RETURNING j.id, j.batch_id
		)
		SELECT array_agg(c.id), array_agg(DISTINCT c.batch_id) FILTER (WHERE c.batch_id IS NOT NULL)
		INTO v_claimed, v_starting
		FROM claimed c;

		IF v_claimed IS NOT NULL THEN
			RETURN QUERY
			SELECT 'job'::text, j.id, j.tenant_id, j.batch_id, j.domain_id, j.kind, j.payload, j.state, j.priority,
				j.run_at, j.attempts, j.max_attempts, j.locked_by, j.lease_expires_at, j.progress,
				COALESCE(j.result, 'null'::jsonb), j.last_error, j.finished_at, j.created_at, j.updated_at, NULL::jsonb
			FROM unnest(v_claimed) AS x(id) JOIN jobs j ON j.id = x.id;
		END IF;
	END IF;

	IF v_tally IS NULL AND v_starting IS NULL THEN
		RETURN;
	END IF;
	SELECT array_agg(l.id ORDER BY l.id), array_agg(l.finished_at IS NULL ORDER BY l.id)
	INTO v_locked, v_open
	FROM (
		SELECT b.id, b.finished_at FROM batches b
		WHERE b.id = ANY(COALESCE(v_tally, '{}') || COALESCE(v_starting, '{}'))
			AND (b.id = ANY(COALESCE(v_tally, '{}')) OR b.status = 'pending')
		ORDER BY b.id
		FOR UPDATE
	) l;
	IF v_locked IS NULL THEN
		RETURN;
	END IF;

	RETURN QUERY
	WITH bat AS (
		UPDATE batches b SET
			succeeded = b.succeeded + COALESCE(t.s, 0),
			failed = b.failed + COALESCE(t.f, 0),
			status = CASE
				WHEN b.finished_at IS NOT NULL THEN b.status
				WHEN b.succeeded + COALESCE(t.s, 0) + b.failed + COALESCE(t.f, 0) + b.cancelled < b.total
					THEN CASE WHEN b.status = 'pending' AND b.id = ANY(COALESCE(v_starting, '{}')) THEN 'running' ELSE b.status END
				WHEN b.failed + COALESCE(t.f, 0) = 0 AND b.cancelled = 0 THEN 'completed'
				WHEN b.succeeded + COALESCE(t.s, 0) = 0 AND b.failed + COALESCE(t.f, 0) > 0 THEN 'failed'
				WHEN b.succeeded + COALESCE(t.s, 0) = 0 THEN 'cancelled'
				ELSE 'completed_with_errors' END,
			finished_at = CASE
				WHEN b.finished_at IS NULL
					AND b.succeeded + COALESCE(t.s, 0) + b.failed + COALESCE(t.f, 0) + b.cancelled >= b.total
					THEN now()
				ELSE b.finished_at END,
			updated_at = now()
		FROM unnest(v_locked, v_open) AS l(id, open)
			LEFT JOIN unnest(v_tally, v_succeeded, v_failed) AS t(id, s, f) ON t.id = l.id
		WHERE b.id = l.id
		RETURNING b.id, b.tenant_id, b.name, b.status, b.total, b.succeeded, b.failed, b.cancelled,
			b.finished_at, b.created_at, b.updated_at, (l.open AND b.finished_at IS NOT NULL) AS just_finished
	)
	SELECT 'batch'::text, b.id, NULL::uuid, NULL::uuid, NULL::uuid, NULL::text, NULL::jsonb, NULL::text,
		NULL::integer, NULL::timestamptz, NULL::integer, NULL::integer, NULL::text, NULL::timestamptz,
		NULL::double precision, NULL::jsonb, NULL::text, NULL::timestamptz, NULL::timestamptz,
		NULL::timestamptz, to_jsonb(b) - 'just_finished'
	FROM bat b
	WHERE b.just_finished;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION jobs_next(text, uuid[], text[], text[], int, bigint, uuid, bigint, bigint);
DROP TRIGGER batches_touch ON batches;
CREATE TRIGGER batches_touch BEFORE UPDATE ON batches FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
DROP TRIGGER jobs_touch ON jobs;
CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
