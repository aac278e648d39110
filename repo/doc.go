// Package repo holds the back office's schema and its repositories —
// profiles, domains, jobs and batches — written once in raw SQL that runs
// the same on pgx and lib/pq, in or out of a transaction, through a
// transaction-mode pooler.
//
//	db, _ := driverconf.Open(cfg)
//	if err := repo.Migrate(ctx, cfg); err != nil { … } // over cfg.DirectURL behind a pooler
//	r := repo.New(db)
//	b, err := r.Batches.Create(ctx, tenant, []string{"example.com", "https://www.bücher.de/"}, repo.BatchOptions{Kind: "scrape"})
//	jobs, err := r.Jobs.Claim(ctx, nil, "worker-1", 10, time.Minute)
//
// Inside a transaction, build the repositories over the transaction:
//
//	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
//		r := repo.New(tx)
//		…
//	})
//
// Every statement is a named constant that names its schema ("public"
// unless [WithSchema] says otherwise) and filters by tenant; writes are
// single set-based statements (unnest of arrays, INSERT … SELECT,
// UPDATE … RETURNING), so nothing is ever half-written. Input is validated
// before anything is sent, and errors are classified: [ValidationError]
// (matching sqladapter.ErrInvalidInput) names the field,
// sqladapter.ErrConflict, sqladapter.ErrNotFound and [ErrLeaseLost] say
// what happened.
//
// # PgBouncer and Supabase's pooler
//
// The repositories keep no session state: no SET (per-transaction settings
// go through sqladapter.WithSetting), no temporary tables beyond one
// transaction, no LISTEN/NOTIFY and no session advisory locks. The job
// queue claims work with one UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
// LOCKED) statement and a lease, so any number of workers can share a
// transaction pooler. A worker loop at the pooler's ceiling uses
// [Jobs.Next]: one statement reports the outcomes of the jobs it ran and
// claims the next ones, and its plan stays cached on every server
// connection (a PL/pgSQL function from the migrations, not a named
// prepared statement). [Domains.BulkUpsert] sends large inputs by COPY
// inside a transaction of its own. bench/REPORT.md measures both against
// pgbench and COPY.
// Migrations are the exception: they need a session (DDL and an advisory
// lock against concurrent runs), so [Migrate] runs over Config.DirectURL when
// Config.URL is a transaction pooler, and refuses with [ErrNeedDirectURL]
// without it.
package repo
