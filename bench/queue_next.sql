-- The project's worker loop with pgbench as the client: each transaction is one
-- call of jobs_next (the function behind repo.Jobs.Next), reporting the jobs the
-- previous call claimed as completed and claiming the next :n, with a lease,
-- attempts and batch accounting, as the Go loop does (without its flaky jobs).
-- Against the anchor (bench/queue_min.sql, the same client) it measures the
-- server's side of the queue alone: what the SQL costs, without the Go client.
--
--   pgbench -n -M extended -c 8 -j 2 -T 10 -D n=20 -D ids='{}' -D rs='{}' -D es='{}' \
--       -f bench/queue_next.sql "$POOLSAFE_TEST_TX_URL"
--
-- (schema poolsafe_bench, filled by `go run ./bench`; see bench/README.md.
-- pgbench keeps a client's variables from one transaction to its next.)
SELECT coalesce(array_agg(id)::text, '{}') AS ids,
	coalesce(array_agg('{"ok":1}'::text)::text, '{}') AS rs,
	coalesce(array_agg(''::text)::text, '{}') AS es
FROM poolsafe_bench.jobs_next('pgbench-' || :client_id, :ids::uuid[], :rs::text[], :es::text[], :n,
	30000, NULL, 1000, 60000)
WHERE what = 'job' \gset
