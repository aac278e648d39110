// Package driverconf turns one configuration — a URL, environment
// variables, or a [Config] — into a database handle that is safe behind a
// connection pooler, with either pgx (github.com/jackc/pgx/v5/stdlib) or
// lib/pq (github.com/lib/pq) underneath.
//
//	cfg, err := driverconf.FromEnv() // DATABASE_URL, DB_DRIVER, DB_POOL_MODE, …
//	if err != nil { … }
//	db, err := driverconf.Open(cfg) // *sqladapter.DB: sqlx, InTx, Stats
//
// # Entry points
//
// Every way in builds the same connector, so every handle runs statements
// the same way: pooler safety, values, errors, settings and isolation level
// live in the connector. Only pool sizing and the acquire timeout belong to
// the handle, because database/sql keeps them outside the driver.
//
//	entry point                        gives             pool sizing, AcquireTimeout
//	---------------------------------  ----------------  ---------------------------------
//	Open(cfg)                          *sqladapter.DB    applied from cfg
//	sql.Open("poolsafe", url)          *sql.DB           refused in url; db.SetMaxOpenConns…
//	sql.OpenDB(NewConnector(cfg)),     *sql.DB, or *DB   yours to set on the *sql.DB
//	  then sqladapter.Wrap if wanted     via Wrap          (Wrap takes WithAcquireTimeout)
//
// [Open] is the one to use. sql.Open is the one-line switch for an existing
// program; [NewConnector] is for code that wraps connectors itself, such as
// otelsql. The *sqladapter.DB embeds *sqlx.DB, whose DB field is the
// *sql.DB, for libraries that want one.
//
// # PgBouncer and Supabase's pooler
//
// A pooler in transaction mode (PgBouncer pool_mode=transaction, Supabase
// Supavisor on port 6543) hands each transaction — and each statement
// outside one — to whichever server connection is free. Anything a driver
// leaves on a server connection between two round trips can then be seen by
// another client, or be missing for its own. With their default settings
// both drivers break silently: lib/pq sends Parse/Describe/Sync and then
// Bind/Execute/Sync, so the Bind can run another client's statement and
// return another client's rows; pgx caches named prepared statements, which
// then "already exist" or "do not exist" on the connection it reaches.
//
// In [Transaction] mode this package therefore:
//
//   - sets pgx to [ExecModeExec] (or [ExecModeSimpleProtocol]) with its
//     statement and description caches off, and lib/pq to
//     binary_parameters=yes: every query is one self-contained round trip
//     that uses only the unnamed statement;
//   - sends no startup parameter the pooler would refuse (search_path,
//     statement_timeout, lock_timeout, options, …); application_name is
//     sent because PgBouncer tracks it. Those settings stay in the Config
//     and are applied inside each transaction with set_config(…, true) by
//     package sqladapter;
//   - removes every URL key that is not a libpq connection parameter —
//     pooler hints (pgbouncer=true, pool_mode, no_prepare,
//     statement_cache_size, prepare_threshold, raw_sql), pool sizing keys
//     (Prisma's connection_limit and pool_timeout, pgxpool's pool_*), and the
//     other driver's keys (binary_parameters, default_query_exec_mode,
//     statement_cache_capacity, …) — so no connection is refused for them.
//     [Config.Notes] lists what was removed and where it went.
//
// The mode is inferred from the URL when [Config.PoolMode] is empty:
// pool_mode=, pgbouncer=true, port 6543 or a no-prepare hint mean
// transaction mode. Say it explicitly when the pooler listens elsewhere.
//
// [Session] mode (a session pooler) behaves like [Direct], except that
// settings are applied with one set_config statement after connecting,
// because poolers refuse them as startup parameters. In [Direct] mode they
// are sent as startup parameters.
//
// Never use LISTEN/NOTIFY, session advisory locks, SET (without LOCAL),
// temporary tables or server-side PREPARE through a transaction pooler: they
// belong to a server connection other clients share. Migrations need a
// session too: give them [Config.DirectURL].
//
// # Defaults
//
// Both drivers get sslmode=prefer unless the URL says otherwise (lib/pq's own
// default is require).
//
// lib/pq always runs with binary_parameters=yes: one round trip per query
// instead of two, measured 30% less client CPU per query in every shape and
// 40% less time with five arguments (BenchmarkQueryRow in this package), and
// the only lib/pq setting that is safe behind a transaction pooler.
//
// pgx uses [ExecModeExec] in every pool mode. In direct and session modes
// [ExecModeCacheStatement] measured 35–56% faster per query (the same
// benchmark; the gap is pgx's own, native pgxpool shows it too), but a cached
// statement fails once after DDL changes its result ("cached plan must not
// change result type"), and every connection holds server-side statements.
// Exec is the fastest mode that is correct whatever the schema does; set
// PgxExecMode to cache_statement on direct or session connections when schema
// changes are coordinated with deploys.
package driverconf
