// Package peer runs the test suites of the libraries poolsafe wraps — sqlx,
// pgx's database/sql driver (pgx/v5/stdlib) and lib/pq — through the
// "poolsafe" driver, on both drivers, behind a transaction-mode PgBouncer,
// while a background load keeps moving server connections between clients.
//
// Nothing of those libraries is kept in this repository. At test time each
// suite's module is copied from the module cache into a temporary
// directory and made a module that requires poolsafe from this checkout
// (a replace directive). A few calls are rewritten in the copy (see
// [Rewrite]) and small shim files added, so that where a suite opened its
// own driver ("postgres", "pgx") it opens poolsafe; then go test -json runs
// the copy and [Judge] holds every test's result against the
// expected-failure list, expected_failures.txt.
//
// Every entry of that list names its reason and one of three categories:
// [DriverAPI] (a), the test uses one driver's own API, types, error values
// or error text; [SessionState] (b), it needs session state no transaction
// pooler can keep (temporary tables across statements, LISTEN, startup
// parameters); [Deliberate] (c), it checks something poolsafe changes on
// purpose, the same way on both drivers — values as sqladapter's values
// table gives them, a connection closed instead of a CancelRequest sent
// when a context ends behind a pooler, a statement that may have run never
// sent again, an unusable connection string refused at sql.Open. A failure
// outside the list fails the run, and so does an entry that no longer
// fails.
//
// sqlx and lib/pq are tested under a renamed module path: their tests are
// in-package, and a test binary of package P cannot import poolsafe when
// poolsafe imports P. The copy therefore sits beside the real library that
// poolsafe uses, as another package with the same code.
//
// Behind the transaction pooler the runner also: runs a [Load] of checked
// queries through the same pool for the whole suite; ends transactions a
// failing upstream test leaves open ([Watchdog]), which would otherwise pin
// one of the pool's two server connections for good; and asks PgBouncer's
// admin console to RECONNECT the pool before and after each suite, so that
// the temporary tables and SETs the suites leave on server connections
// (what a transaction pooler cannot keep apart) reach neither the next
// suite nor anyone else using the pool. Network access is confined to
// 127.0.0.1: the shims refuse or skip every other host, and the copy of
// lib/pq cannot dial anything but loopback addresses.
//
// The tests are in peer_test.go; the shims in testdata/shims.
package peer
