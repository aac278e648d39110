-- The anchor: the minimal queue SQL a fast PostgreSQL queue runs. Claim up to :n
-- runnable jobs with FOR UPDATE SKIP LOCKED in one statement, then complete the
-- claimed ids in one statement. No batches, no leases, no attempts, no trigger:
-- the ceiling of the transaction pool for this shape of work.
--
--   pgbench -n -M extended -c 8 -j 2 -T 10 -D n=20 -f bench/queue_min.sql "$POOLSAFE_TEST_TX_URL"
--
-- (table poolsafe_bench.minq, created and filled by `go run ./bench`; see bench/README.md)
WITH c AS (
	SELECT id FROM poolsafe_bench.minq
	WHERE state = 'queued' AND run_at <= now()
	ORDER BY priority DESC, run_at, id
	LIMIT :n
	FOR UPDATE SKIP LOCKED
), u AS (
	UPDATE poolsafe_bench.minq q SET state = 'running' FROM c WHERE q.id = c.id
	RETURNING q.id, q.payload
)
SELECT coalesce(array_agg(id), '{}') AS ids, count(*) AS claimed FROM u \gset
UPDATE poolsafe_bench.minq SET state = 'done' WHERE id = ANY(:ids::uuid[]);
