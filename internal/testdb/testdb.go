// Package testdb finds the local PostgreSQL + PgBouncer stack for tests and
// runs checked concurrent load against it.
//
// The stack is started by scripts/pgstack.sh, whose "env" command prints the
// three variables read here. When they are unset, database tests skip with a
// loud message — unless POOLSAFE_REQUIRE_DB=1 (set by CI and make test), where
// a missing or unreachable database fails the test.
package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // holdShared's session
)

// Environment variables naming the stack's URLs.
const (
	EnvDirectURL  = "POOLSAFE_TEST_DIRECT_URL"
	EnvSessionURL = "POOLSAFE_TEST_SESSION_URL"
	EnvTxURL      = "POOLSAFE_TEST_TX_URL"
	EnvRequireDB  = "POOLSAFE_REQUIRE_DB"
	// A streaming replica of the same server, directly and through PgBouncer
	// (pool_mode=transaction, pool_size=2).
	EnvReplicaDirectURL = "POOLSAFE_TEST_REPLICA_DIRECT_URL"
	EnvReplicaTxURL     = "POOLSAFE_TEST_REPLICA_TX_URL"
)

// URLs are the three ways to reach the same database.
type URLs struct {
	Direct  string // PostgreSQL itself
	Session string // PgBouncer, pool_mode=session
	Tx      string // PgBouncer, pool_mode=transaction, pool_size=2
	// The replica's URLs, when the stack has one (see GetUnlocked).
	ReplicaDirect, ReplicaTx string
}

// Required reports whether a missing database must fail tests.
func Required() bool { return os.Getenv(EnvRequireDB) == "1" }

// Get returns the stack's URLs, or skips (fails when [Required]) when they
// are not set. It holds [RawControlKey] shared until t and its cleanups
// end, so that no negative control — raw drivers through the transaction
// pooler, which can run t's statements with their own arguments — runs
// while t does, in this process or another (go test runs packages in
// parallel). It waits for a control that is running to end.
func Get(t testing.TB) URLs {
	t.Helper()
	u := GetUnlocked(t, false)
	holdShared(t, u)
	return u
}

// GetUnlocked is Get without the lock, for a test that takes
// [RawControlKey] itself or runs code that does: a negative control, or
// the conformance suite (its tests hold the lock shared, its control
// exclusively; a parent holding it shared would wait for its own
// control). With replica, the stack's replica must be configured too.
func GetUnlocked(t testing.TB, replica bool) URLs {
	t.Helper()
	u := URLs{
		Direct:  os.Getenv(EnvDirectURL),
		Session: os.Getenv(EnvSessionURL),
		Tx:      os.Getenv(EnvTxURL),

		ReplicaDirect: os.Getenv(EnvReplicaDirectURL),
		ReplicaTx:     os.Getenv(EnvReplicaTxURL),
	}
	if u.Direct == "" || u.Session == "" || u.Tx == "" {
		msg := fmt.Sprintf("%s, %s and %s must all be set: run `make test`, or `scripts/pgstack.sh up && eval \"$(scripts/pgstack.sh env)\"`",
			EnvDirectURL, EnvSessionURL, EnvTxURL)
		if Required() {
			t.Fatalf("database required (%s=1) but not configured: %s", EnvRequireDB, msg)
		}
		t.Skipf("SKIPPING DATABASE TEST — no database configured: %s", msg)
	}
	if replica && (u.ReplicaDirect == "" || u.ReplicaTx == "") {
		msg := fmt.Sprintf("%s and %s must be set: scripts/pgstack.sh up starts the replica", EnvReplicaDirectURL, EnvReplicaTxURL)
		if Required() {
			t.Fatalf("replica required (%s=1) but not configured: %s", EnvRequireDB, msg)
		}
		t.Skipf("SKIPPING REPLICA TEST — no replica configured: %s", msg)
	}
	return u
}

// sharedWait bounds how long holdShared waits for a negative control (in
// another process, the conformance suite's takes about a minute).
const sharedWait = 5 * time.Minute

// holdShared takes [RawControlKey] shared over u.Direct until t and its
// cleanups end (see [Get]).
func holdShared(t testing.TB, u URLs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sharedWait)
	defer cancel()
	l, err := LockRawControl(ctx, "pgx", lockURL(u.Direct, t.Name()), false)
	if err != nil {
		t.Fatalf("waiting for a negative control on the database to end (advisory lock %#x over the direct URL): %v", RawControlKey, err)
	}
	t.Cleanup(l.Release)
}

// Ping checks db answers within 15 seconds; it fails the test otherwise
// (an unreachable database is never a skip once the URLs are set).
func Ping(t testing.TB, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("database unreachable: %v (is scripts/pgstack.sh up running?)", err)
	}
}

// Result counts what a [Load] saw.
type Result struct {
	Queries int64
	Errors  int64
	Wrong   int64
	// Samples holds up to five descriptions of failures.
	Samples []string
}

func (r Result) String() string {
	return fmt.Sprintf("%d queries, %d errors, %d wrong answers", r.Queries, r.Errors, r.Wrong)
}

// Query runs query i of goroutine g and returns the answer it got and the
// one it expected.
type Query func(ctx context.Context, g, i int) (got, want int64, err error)

// Load runs goroutines × perG calls of q concurrently and counts errors and
// wrong answers.
func Load(ctx context.Context, goroutines, perG int, q Query) Result {
	var (
		queries, errs, wrong atomic.Int64
		mu                   sync.Mutex
		samples              []string
		wg                   sync.WaitGroup
	)
	sample := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(samples) < 5 {
			samples = append(samples, s)
		}
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				if ctx.Err() != nil {
					return
				}
				queries.Add(1)
				got, want, err := call(ctx, q, g, i)
				switch {
				case err != nil:
					errs.Add(1)
					sample(fmt.Sprintf("g%d/q%d: %v", g, i, err))
				case got != want:
					wrong.Add(1)
					sample(fmt.Sprintf("g%d/q%d: got %d, want %d", g, i, got, want))
				}
			}
		}()
	}
	wg.Wait()
	return Result{Queries: queries.Load(), Errors: errs.Load(), Wrong: wrong.Load(), Samples: samples}
}

// call runs q, turning a panic into an error: through a transaction
// pooler a raw driver can receive another client's rows in a format it
// did not ask for, and lib/pq then panics while decoding them.
func call(ctx context.Context, q Query, g, i int) (got, want int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("driver panicked: %v", p)
		}
	}()
	return q(ctx, g, i)
}

// CheckedSQL returns goroutine g's own SQL text and the answer it gives for
// argument i: a statement or Bind that lands on another goroutine's SQL
// shows up as a wrong answer.
func CheckedSQL(g int) (query string, answer func(i int) int64) {
	return fmt.Sprintf("SELECT $1::int8 * 1000 + %d AS v /* poolsafe load g%d */", g, g),
		func(i int) int64 { return int64(i)*1000 + int64(g) }
}

// DBQuery is a [Query] that runs [CheckedSQL] with db.QueryRowContext.
func DBQuery(db *sql.DB) Query {
	return func(ctx context.Context, g, i int) (int64, int64, error) {
		q, answer := CheckedSQL(g)
		var got int64
		err := db.QueryRowContext(ctx, q, i).Scan(&got)
		return got, answer(i), err
	}
}

// lockURL is dsn with the test's name as application_name, so that
// pg_stat_activity says which test holds the lock.
func lockURL(dsn, test string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn // a key=value DSN: as it is
	}
	name := "poolsafe-lock " + test
	if len(name) > 63 { // NAMEDATALEN-1: the server would cut it
		name = name[:63]
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // a space: pgx keeps a '+' as it is
	return u.String()
}
