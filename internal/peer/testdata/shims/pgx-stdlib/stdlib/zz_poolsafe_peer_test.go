package stdlib_test

// This file is added by poolsafe's peer runner (internal/peer) to its copy
// of pgx. The suite's own helpers of the same names are removed from
// sql_test.go: these open the "poolsafe" driver on PGX_TEST_DATABASE (a
// poolsafe URL) instead of stdlib.OpenDB on a pgx.ConnConfig, and ask the
// server, not a *pgx.Conn, what it is. The runner also rewrites the
// suite's sql.Open and stdlib.OpenDB calls to peerSQLOpen and peerOpenDB.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	_ "github.com/scrapersky/poolsafe/driverconf" // registers "poolsafe"
)

// peerOpen opens poolsafe on PGX_TEST_DATABASE; with driver pgx, mode
// (when not "") becomes its default_query_exec_mode.
func peerOpen(mode string) (*sql.DB, error) {
	url := os.Getenv("PGX_TEST_DATABASE")
	if mode != "" && os.Getenv("POOLSAFE_PEER_DRIVER") == "pgx" {
		url += "&default_query_exec_mode=" + mode
	}
	return sql.Open("poolsafe", url)
}

func openDB(t testing.TB, opts ...stdlib.OptionOpenDB) *sql.DB {
	t.Helper()
	if len(opts) > 0 {
		return sql.OpenDB(peerFailing{errOptions})
	}
	db, err := peerOpen("")
	require.NoError(t, err)
	return db
}

// testWithAllQueryExecModes runs f on each of pgx's query exec modes, as
// upstream's does; poolsafe refuses the modes that need server-side
// prepared statements in transaction mode. Lib/pq has no such modes: on
// driver pq every subtest runs the same configuration.
func testWithAllQueryExecModes(t *testing.T, f func(t *testing.T, db *sql.DB)) {
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			db, err := peerOpen(peerModeName(mode))
			require.NoError(t, err)
			defer func() {
				require.NoError(t, db.Close())
			}()
			f(t, db)
			ensureDBValid(t, db)
		})
	}
}

func skipCockroachDB(t testing.TB, db *sql.DB, msg string) {
	var v string
	require.NoError(t, db.QueryRow("select version()").Scan(&v))
	if strings.Contains(v, "CockroachDB") {
		t.Skip(msg)
	}
}

func skipPostgreSQLVersionLessThan(t testing.TB, db *sql.DB, minVersion int64) {
	var v int64
	require.NoError(t, db.QueryRow("select current_setting('server_version_num')::int8 / 10000").Scan(&v))
	if v < minVersion {
		t.Skipf("Test requires PostgreSQL v%d+", minVersion)
	}
}

// peerModeName is mode as the URL key default_query_exec_mode spells it.
func peerModeName(mode pgx.QueryExecMode) string {
	return strings.ReplaceAll(mode.String(), " ", "_")
}

// peerSQLOpen replaces sql.Open: pgx's driver names open poolsafe.
func peerSQLOpen(driverName, dsn string) (*sql.DB, error) {
	if driverName == "pgx" || driverName == "pgx/v5" {
		return sql.Open("poolsafe", dsn)
	}
	return sql.Open(driverName, dsn)
}

// peerOpenDB replaces stdlib.OpenDB. A query exec mode other than the one
// pgx.ParseConfig gives is passed on; options are pgx API a poolsafe URL
// cannot carry, and make every connection fail saying so.
func peerOpenDB(config pgx.ConnConfig, opts ...stdlib.OptionOpenDB) *sql.DB {
	if len(opts) > 0 {
		return sql.OpenDB(peerFailing{errOptions})
	}
	mode := ""
	if def, err := pgx.ParseConfig(os.Getenv("PGX_TEST_DATABASE")); err == nil && config.DefaultQueryExecMode != def.DefaultQueryExecMode {
		mode = peerModeName(config.DefaultQueryExecMode)
	}
	db, err := peerOpen(mode)
	if err != nil {
		return sql.OpenDB(peerFailing{err})
	}
	return db
}

var errOptions = errors.New("peer: stdlib.OptionOpenDB options are pgx API; sql.Open(\"poolsafe\", url) cannot take them")

// peerFailing is a connector whose every connection fails with err.
type peerFailing struct{ err error }

func (c peerFailing) Connect(context.Context) (driver.Conn, error) { return nil, c.err }
func (c peerFailing) Driver() driver.Driver                        { return c }
func (c peerFailing) Open(string) (driver.Conn, error)             { return nil, c.err }
