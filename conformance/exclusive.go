package conformance

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

// The negative control runs the raw drivers alone. Through a transaction
// pooler raw lib/pq's Bind can land on a server connection where another
// client's unnamed statement waits, and execute it with lib/pq's
// arguments — an INSERT of another test, say (the run of ci5 failed on
// the duplicate key it made). So every test of a target that swaps server
// connections holds a shared lock from before its body to after its
// cleanups, and the control holds it exclusively:
//
//   - in this process: a sync.RWMutex, across every target (a caller may
//     run targets in parallel), without a round trip to the database;
//   - across processes: testdb.RawControlKey, a PostgreSQL advisory
//     lock taken over DirectURL on a session of the test's own. go test
//     runs packages in parallel, so poolsafe check's tests (cmd/poolsafe)
//     and driverconf's own negative control reach the same pooler while
//     TestMatrix runs.
//
// Both locks are taken only by leaf tests — those of run.test and
// run.testAlone, which start no subtests — in that order, and released in
// the opposite one. A topic or a target never holds either: a parent that
// did would hold it while waiting for its parallel subtests, which include
// the control. Both locks queue a shared request behind a waiting
// exclusive one, so a control waits for the tests that are running, and
// the tests that start after it wait for it.
var (
	rawControl sync.RWMutex
	// activeTests counts the leaf tests holding the shared locks, for the
	// control to check that there are none.
	activeTests atomic.Int64
	// lockDatabase takes testdb.RawControlKey over directURL; the unit
	// test, which has no database, replaces it.
	lockDatabase = func(ctx context.Context, directURL string, exclusive bool) (dbLock, error) {
		return testdb.LockRawControl(ctx, driverconf.DriverName, directURL, exclusive)
	}
)

// dbLock is a held cross-process lock.
type dbLock interface {
	Others(ctx context.Context) (int, error) // other sessions holding it
	Release()
}

// lockWait bounds the wait for the cross-process lock: another process's
// longest test, or its control.
const lockWait = 5 * time.Minute

// holdShared keeps t from running while a negative control does, until
// t's cleanups are done. Targets that keep a server connection per client
// connection need no lock: the raw drivers never reach theirs.
func (r *run) holdShared(t *testing.T) {
	t.Helper()
	if !r.target.swapsConnections() {
		return
	}
	l := r.lockBoth(t, false, "any negative control on the database")
	activeTests.Add(1)
	t.Cleanup(func() {
		activeTests.Add(-1)
		l.Release()
		rawControl.RUnlock()
	})
}

// holdAlone keeps every other test of a target that swaps server
// connections from running while t does, until t's cleanups are done,
// and fails t if one holds the shared lock all the same, when t starts or
// when it ends.
func (r *run) holdAlone(t *testing.T) {
	t.Helper()
	l := r.lockBoth(t, true, "the other tests on the database")
	check := func(when string) {
		if n := activeTests.Load(); n != 0 {
			t.Errorf("%s: %d tests of this process are running", when, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if n, err := l.Others(ctx); err != nil {
			t.Errorf("%s: count the other holders of advisory lock %#x: %v", when, testdb.RawControlKey, err)
		} else if n != 0 {
			t.Errorf("%s: %d other sessions hold advisory lock %#x", when, n, testdb.RawControlKey)
		}
	}
	check("not alone at the start")
	t.Cleanup(func() {
		check("not alone at the end")
		l.Release()
		rawControl.Unlock()
	})
}

// lockBoth takes the process's lock, then the database's, shared or
// exclusively, waiting at most lockWait for holders of the other kind
// (what it fails t with names them: waitingFor). The caller releases both.
func (r *run) lockBoth(t *testing.T, exclusive bool, waitingFor string) dbLock {
	t.Helper()
	unlock := rawControl.RUnlock
	if exclusive {
		rawControl.Lock()
		unlock = rawControl.Unlock
	} else {
		rawControl.RLock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	l, err := lockDatabase(ctx, r.target.Config.DirectURL, exclusive)
	if err != nil {
		unlock()
		t.Fatalf("waiting for %s to end (advisory lock %#x over DirectURL): %v", waitingFor, testdb.RawControlKey, err)
	}
	return l
}
