// Package sqladapter makes database/sql and sqlx code behave the same on
// pgx and lib/pq, and stay correct behind a transaction-mode pooler.
//
// Most programs get it through driverconf.Open, which returns a [*DB]:
//
//	db, err := driverconf.Open(cfg)
//	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
//		_, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'done' WHERE id = $1`, id)
//		return err
//	}, sqladapter.WithSetting("app.tenant_id", tenant))
//	if errors.Is(err, sqladapter.ErrConflict) { … }
//
// # The connector wrapper
//
// [NewConnector] wraps the driver's connector. Its connections:
//
//   - prepare client-side when asked (driverconf does so in transaction
//     mode): db.Prepare, sqlx Preparex, PrepareNamed and NamedStmt get a
//     statement that remembers its SQL and runs it as an ordinary one-round-trip
//     query, so no named statement ever reaches a server connection that other
//     clients share. Invalid SQL still fails at Prepare time: pgx sends an
//     unnamed Parse/Describe/Sync, lib/pq a single simple Query message with
//     PREPARE and DEALLOCATE (statements PREPARE does not accept, such as DDL,
//     are checked when they run);
//   - normalise values, so the same Go call stores the same data and scans
//     the same Go values on both drivers (table below);
//   - classify every error (see [Classify]) and, optionally, log failed and
//     slow queries and count them ([Metrics]);
//   - implement Pinger, SessionResetter and Validator exactly when the
//     driver's connection does; [Unwrap] returns the driver's connection
//     inside sql.Conn.Raw.
//
// # Values
//
// Measured on PostgreSQL 15: the two drivers disagree on these, and the
// wrapper settles each one as shown. The conformance suite checks every row.
//
//	Go value / column            pgx alone             lib/pq alone               poolsafe, both drivers
//	---------------------------  --------------------  -------------------------  ------------------------------
//	scan timestamptz             time.Local            server session's zone      time.Time in time.UTC
//	scan timestamp, date         time.UTC              unnamed zero-offset zone   time.Time in time.UTC
//	scan timestamp 'infinity'    string "infinity"     []byte "infinity"          string "infinity"
//	scan time                    string "15:04:05"     time.Time in year 0        string "15:04:05.999999"
//	scan time '24:00'            string "24:00:00"     time.Time, 2 January       string "24:00:00"
//	scan timetz                  string "15:04:05-07"  time.Time in year 0 with   string as PostgreSQL writes it:
//	                                                     the offset as its zone     "11:59:59.5-04:30", "…+04:01:02"
//	scan time, timetz into
//	  *time.Time                 error                 stored                     error (a string, as on pgx)
//	scan numeric, uuid, interval,
//	  arrays, inet into any      string                []byte                     string
//	scan other types (enums,
//	  hstore, extension types)
//	  into any or a Scanner      string                []byte                     string: a Scanner that takes
//	                                                                                only []byte (lib/pq's
//	                                                                                hstore.Hstore) fails on both
//	                                                                                drivers, one that takes a
//	                                                                                string (pgtype.Hstore) works
//	scan bytea, json, jsonb, xml []byte                []byte                     []byte (unchanged)
//	scan bytea with
//	  bytea_output = escape      error in text results []byte                     []byte
//	                               ("invalid hex
//	                               format")
//	arg []byte → jsonb, json     error / error         error / stored             stored as JSON text
//	arg []byte → text            stored as hex "\x…"   stored as the text         stored as the text
//	arg []byte → bytea           stored                stored                     stored (unchanged)
//	arg json.RawMessage → jsonb  stored                error                      stored
//	arg time.Time → timestamp,
//	  time                       UTC wall clock        the value's own zone       UTC wall clock
//	arg time.Time → date         the value's own zone  the value's own zone       the value's own zone
//	arg time.Duration → interval stored               nanoseconds as seconds     stored (sent as microseconds)
//	arg float32 1.1 → float8,
//	  numeric, text              1.1 (exec mode)       1.100000023841858          1.1
//	arg Valuer → []byte → text   stored as hex "\x…"   stored as the text         stored as the text
//	arg Valuer → []byte → jsonb  error                 error                      stored as JSON text
//	arg nil []byte → text, jsonb NULL                  NULL                       NULL
//	arg *any, **T (a pointer to
//	  an interface or pointer)   error ("cannot find   its value, NULL when nil   its value, NULL when nil
//	                               encode plan")
//	scan float4 1.2 into float64 1.2000000476837158    1.2                        1.2
//	scan oid, xid, cid into any  int64                 []byte                     int64
//	query without arguments,
//	  several statements         refused (42601)       all run; one result set    all run (one simple Query);
//	                                                     per statement that has     the same result sets
//	                                                     columns (NextResultSet)    (NextResultSet)
//	BeginTx sql.LevelSnapshot    REPEATABLE READ       error                      REPEATABLE READ (PostgreSQL's
//	                                                                                snapshot isolation)
//
// A driver.Valuer is resolved before any of this, so what it returns is
// treated like the same value passed directly; so is a pointer, as
// database/sql does for lib/pq.
//
// Where one driver gives a string and the other a []byte for the same
// text, poolsafe gives the string, as pgx does: *string, *[]byte,
// sql.RawBytes, numbers and sql.Null* scan either alike, but a value cannot
// be both, so a Scanner written for one driver's representation works with
// one choice only (lib/pq's hstore.Hstore takes only []byte, pgx's pgtype
// types only a string). Types that both drivers give as []byte — bytea,
// json, jsonb, xml — stay []byte. For the same reason time and timetz are
// strings, as on pgx: scanning them into *time.Time, which lib/pq alone
// allowed, fails on both drivers.
//
// A []byte argument is sent as bytes only where the parameter is bytea;
// elsewhere it is sent as text. A time.Time whose zone is not at UTC's
// offset is sent as its date in its own zone where the parameter is a
// date (otherwise the UTC date could be the day before or after), and in
// UTC elsewhere. The parameter types come from describing the statement
// once per SQL text (one self-contained round trip, cached), and only for
// statements that have such an argument.
//
// # PgBouncer and Supabase's pooler
//
// Behind a transaction-mode pooler every statement outside a transaction may
// run on a different server connection, so the wrapper (with
// ClientSidePrepare, as driverconf sets it in transaction mode) never leaves
// anything on one: no named statement (wire-level tests in the conformance
// suite count zero named Parse messages), every query one self-contained
// round trip. Settings given in [ConnectorOptions].Settings apply with
// set_config(…, true): after BEGIN in every transaction (one more round
// trip), and around every statement outside one, which then runs in a
// transaction of its own (BEGIN, set_config, the statement, COMMIT: four
// round trips instead of one — set them on the role with ALTER ROLE … SET
// to pay nothing); statements that cannot run in a transaction block, and
// CALL and DO (a procedure may COMMIT), run as they are, without them.
// What it cannot make safe, it does not do: LISTEN/NOTIFY,
// session advisory locks, temporary tables that outlive a transaction and
// session-level SET need a session — open those connections on a direct or
// session-mode URL. A connection returned to the pool while still inside a
// transaction (a raw BEGIN) is closed, not reused.
//
// Behind a pooler (BehindPooler, and pgx as driverconf sets it up) no
// CancelRequest is ever sent: PgBouncer 1.18 (Debian 12) can exit on one
// ("bad client state: 0", pgbouncer issue #801). When a context ends
// mid-statement, the statement's own connection is closed instead; the
// statement then runs on the server until it ends or hits
// statement_timeout.
//
// # After a failure
//
// [Error.Outcome] says what a failed call can have done, the same way on
// both drivers: "the statement did not run" (a server error, or nothing was
// sent), "it may have run" (the connection was lost or the call abandoned
// after the statement was sent), or "it ran" ([ErrNotFound]). A statement
// that may have run is never sent again by database/sql: lib/pq's
// driver.ErrBadConn after bytes were written is turned into such an error,
// as pgx already does with pgconn.SafeToRetry. A failed COMMIT follows the
// same rule: "it may have run" means the transaction may have committed.
// A failure while the connection was being opened is "did not run".
//
// When the server (or PgBouncer) ended the session with a FATAL error —
// "server login has been failing, try again later (server_login_retry)"
// 08P01, "terminating connection due to administrator command" 57P01 —
// the error carries its message and SQLSTATE on both drivers (errors.As
// reaches a *pgconn.PgError or a *pq.Error), with the same Kind; lib/pq
// alone reports driver.ErrBadConn, and the wrapper reads the server's
// error off the connection instead.
//
// Every call ends at its context's deadline on both drivers, also while
// the network or the pooler stalls: lib/pq's BEGIN, which lib/pq itself
// does not bound by the context, is cut off by the wrapper (the
// connection is then discarded).
//
// # Transactions
//
// [DB.InTx] runs a function in a transaction with the configured isolation
// level (READ COMMITTED by default), applies per-transaction settings in one
// round trip with set_config(name, value, true) — never session-level SET —
// and retries serialization failures, deadlocks and connections lost before
// COMMIT with a capped, jittered exponential backoff ([DefaultMaxAttempts]
// attempts). An error of the function's own is returned unchanged and never
// retried.
package sqladapter
