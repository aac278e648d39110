package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RawControlKey is the PostgreSQL advisory lock that keeps a negative
// control alone on a database: the bytes of "poolsafe".
//
// A negative control runs raw drivers with their defaults through a
// transaction pooler. lib/pq sends Parse and Describe in one round trip
// and Bind and Execute in a second, which PgBouncer may send to another
// server connection: there the Bind executes whatever unnamed statement
// the last client left, with lib/pq's arguments — an INSERT of another
// test, say. Tests that go through a transaction pooler therefore hold
// the lock shared, and a negative control holds it exclusively, in
// whichever process either runs (go test runs packages in parallel, and
// poolsafe check is a process of its own): PostgreSQL queues a shared
// request behind a waiting exclusive one, so a control waits only for the
// tests already running.
const RawControlKey int64 = 0x706f6f6c73616665

// RawControlLock is a held [RawControlKey] lock, on a session of its own.
type RawControlLock struct {
	db        *sql.DB
	conn      *sql.Conn
	exclusive bool
}

// LockRawControl takes [RawControlKey] shared or exclusively on a new
// session opened with driverName over dsn, which must reach the database
// itself or a session pooler (a session lock through a transaction pooler
// would stay on whichever server connection took it). It waits until ctx
// ends for a holder of the other kind to release it.
func LockRawControl(ctx context.Context, driverName, dsn string, exclusive bool) (*RawControlLock, error) {
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	fn := "pg_advisory_lock_shared"
	if exclusive {
		fn = "pg_advisory_lock"
	}
	if _, err := conn.ExecContext(ctx, "SELECT "+fn+"($1::int8)", RawControlKey); err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	return &RawControlLock{db: db, conn: conn, exclusive: exclusive}, nil
}

// Others counts the other sessions that hold [RawControlKey] in the same
// database, of either kind.
func (l *RawControlLock) Others(ctx context.Context) (int, error) {
	var n int
	err := l.conn.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (classid::int8 << 32 | objid::int8) = $1::int8`, RawControlKey).Scan(&n)
	return n, err
}

// Release gives the lock back and closes its session (ending the session
// releases it too, should the unlock fail).
func (l *RawControlLock) Release() {
	fn := "pg_advisory_unlock_shared"
	if l.exclusive {
		fn = "pg_advisory_unlock"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = l.conn.ExecContext(ctx, "SELECT "+fn+"($1::int8)", RawControlKey)
	l.conn.Close()
	l.db.Close()
}
