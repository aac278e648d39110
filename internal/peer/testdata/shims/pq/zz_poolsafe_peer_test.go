package pq

// Added by poolsafe's peer runner (internal/peer): the suite's sql.Open
// calls are rewritten to peerSQLOpen, which opens the poolsafe driver.

import (
	"database/sql"

	"poolsafe.peer.invalid/github.com/lib/pq/internal/pqtest"
)

func peerSQLOpen(driverName, dsn string) (*sql.DB, error) { return pqtest.PeerSQLOpen(driverName, dsn) }
