package sqlx

// This file is added by poolsafe's peer runner (internal/peer) to its copy
// of sqlx. The suite connects with Connect("postgres", SQLX_POSTGRES_DSN);
// the runner rewrites those calls to peerConnect, which opens the
// "poolsafe" driver on POOLSAFE_PEER_URL instead.

import (
	"fmt"
	"os"
	"testing"

	_ "github.com/scrapersky/poolsafe/driverconf" // registers "poolsafe"
)

// The real sqlx learns "poolsafe" from driverconf; this copy is another
// package and must be told too.
func init() { BindDriver("poolsafe", DOLLAR) }

func peerConnect(driverName, dsn string) (*DB, error) {
	if driverName == "postgres" {
		return Connect("poolsafe", os.Getenv("POOLSAFE_PEER_URL"))
	}
	return Connect(driverName, dsn)
}

// TestMain refuses to run a suite that would quietly skip PostgreSQL:
// ConnectAll turns it off when the first connection fails.
func TestMain(m *testing.M) {
	if !TestPostgres || pgdb == nil || TestMysql || TestSqlite {
		fmt.Fprintln(os.Stderr, "peer: sqlx's suite is not set to run on PostgreSQL through poolsafe alone (see the connection error above)")
		os.Exit(3)
	}
	os.Exit(m.Run())
}
