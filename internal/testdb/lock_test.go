package testdb

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestGetHoldsTheControlLock: Get holds RawControlKey shared, on a session
// named after the test, until the test's cleanups end; GetUnlocked takes
// no lock.
func TestGetHoldsTheControlLock(t *testing.T) {
	u := GetUnlocked(t, false)
	db, err := sql.Open("pgx", u.Direct)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	held := func(test string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock' AND l.objsubid = 1
			  AND (l.classid::int8 << 32 | l.objid::int8) = $1::int8 AND a.application_name = $2`,
			RawControlKey, "poolsafe-lock "+test).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var name string
	t.Run("locked", func(t *testing.T) {
		name = t.Name()
		Get(t)
		if n := held(name); n != 1 {
			t.Errorf("while the test runs, %d sessions named after it hold the lock shared, want 1", n)
		}
	})
	// Release closes the session; the server may take a moment to drop it.
	deadline := time.Now().Add(5 * time.Second)
	for held(name) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the lock of %s is still held after it ended", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Run("unlocked", func(t *testing.T) {
		GetUnlocked(t, false)
		if n := held(t.Name()); n != 0 {
			t.Errorf("GetUnlocked: %d sessions hold the lock for the test, want 0", n)
		}
	})
}

func TestLockURL(t *testing.T) {
	got := lockURL("postgres://u:p@127.0.0.1:5432/db?sslmode=disable", "TestX/sub")
	want := "postgres://u:p@127.0.0.1:5432/db?application_name=poolsafe-lock%20TestX%2Fsub&sslmode=disable"
	if got != want {
		t.Errorf("lockURL = %s, want %s", got, want)
	}
	if got := lockURL("host=x dbname=y", "T"); got != "host=x dbname=y" {
		t.Errorf("key=value DSN changed: %s", got)
	}
}
