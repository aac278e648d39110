package driverconf_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

var bothDrivers = []driverconf.Driver{driverconf.PGX, driverconf.PQ}

// openFake opens a handle on the fake server the way driverconf.Open does
// behind a transaction pooler.
func openFake(t *testing.T, s *fakeServer, d driverconf.Driver) *sqladapter.DB {
	t.Helper()
	cfg, err := driverconf.Parse(s.url())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Driver, cfg.PoolMode = d, driverconf.Transaction
	cfg.MaxOpenConns, cfg.MaxIdleConns = 2, 2
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func isBegin(sql string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(sql)), "BEGIN")
}

func isCommit(sql string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(sql)), "COMMIT")
}

// TestDeadlineWhileTheServerStalls: whatever request the server (or the
// pooler, or the network) stops answering, the call returns soon after its
// deadline with a timeout, on both drivers. lib/pq's BeginTx did not: it
// watches the context only once BEGIN has answered, so InTx waited for as
// long as the stall lasted (the fault suite's stall-12s saw 12 s calls with
// a 2 s deadline).
func TestDeadlineWhileTheServerStalls(t *testing.T) {
	t.Parallel()
	const (
		deadline = 300 * time.Millisecond
		bound    = 700 * time.Millisecond // what a loaded test machine may add
	)
	cases := []struct {
		name  string
		stall func(sql string) bool
		call  func(ctx context.Context, db *sqladapter.DB) error
	}{
		{"BEGIN", isBegin, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(*sqladapter.Tx) error { return nil })
		}},
		{"statement in a transaction", func(sql string) bool { return !isBegin(sql) }, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(tx *sqladapter.Tx) error {
				_, err := tx.ExecContext(ctx, "SELECT 1")
				return err
			})
		}},
		{"COMMIT", isCommit, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(*sqladapter.Tx) error { return nil })
		}},
		{"statement", func(string) bool { return true }, func(ctx context.Context, db *sqladapter.DB) error {
			_, err := db.ExecContext(ctx, "SELECT 1")
			return err
		}},
		{"query", func(string) bool { return true }, func(ctx context.Context, db *sqladapter.DB) error {
			var n int
			return db.QueryRowContext(ctx, "SELECT 1").Scan(&n)
		}},
	}
	for _, c := range cases {
		for _, d := range bothDrivers {
			t.Run(c.name+"/"+string(d), func(t *testing.T) {
				t.Parallel()
				s := startFakeServer(t, nil, func(sql string) answer {
					if c.stall(sql) {
						return answerStall
					}
					return answerOK
				})
				db := openFake(t, s, d)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				errc := make(chan error, 1)
				go func() { errc <- c.call(ctx, db) }()
				select {
				case err := <-errc:
					took := time.Since(start)
					if took > deadline+bound {
						t.Errorf("returned after %v with a %v deadline", took.Round(time.Millisecond), deadline)
					}
					if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("err = %v (kind %v), want a timeout", err, sqladapter.KindOf(err))
					}
				case <-time.After(5 * time.Second):
					t.Errorf("still running 5 s after a %v deadline", deadline)
				}
			})
		}
	}
}

// TestServerFatalCarried: when the server (or PgBouncer) answers a
// request with a FATAL error and closes the connection, the classified
// error carries its message and SQLSTATE on both drivers — lib/pq reported
// driver.ErrBadConn alone — with the same Kind and outcome.
func TestServerFatalCarried(t *testing.T) {
	t.Parallel()
	fatals := []*pgproto3.ErrorResponse{
		{Severity: "FATAL", Code: "08P01", Message: "server login has been failing, try again later (server_login_retry)"},
		{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"},
	}
	type outcome struct {
		kind     sqladapter.Kind
		state    string
		message  string
		outcome  sqladapter.Outcome
		errorsIs []error
	}
	cases := []struct {
		name  string
		fatal func(sql string) bool
		call  func(ctx context.Context, db *sqladapter.DB) error
		want  func(f *pgproto3.ErrorResponse) outcome
	}{
		{"statement", func(string) bool { return true }, func(ctx context.Context, db *sqladapter.DB) error {
			_, err := db.ExecContext(ctx, "SELECT 1")
			return err
		}, func(f *pgproto3.ErrorResponse) outcome {
			return outcome{sqladapter.KindConnection, f.Code, f.Message, sqladapter.OutcomeUnknown, []error{sqladapter.ErrConnection}}
		}},
		{"statement with arguments", func(string) bool { return true }, func(ctx context.Context, db *sqladapter.DB) error {
			_, err := db.ExecContext(ctx, "SELECT $1::int", 1)
			return err
		}, func(f *pgproto3.ErrorResponse) outcome {
			return outcome{sqladapter.KindConnection, f.Code, f.Message, sqladapter.OutcomeUnknown, []error{sqladapter.ErrConnection}}
		}},
		{"BEGIN", isBegin, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(*sqladapter.Tx) error { return nil }, sqladapter.WithAttempts(1))
		}, func(f *pgproto3.ErrorResponse) outcome {
			return outcome{sqladapter.KindConnection, f.Code, f.Message, sqladapter.OutcomeUnknown, []error{sqladapter.ErrConnection}}
		}},
		{"statement in a transaction", func(sql string) bool { return !isBegin(sql) }, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(tx *sqladapter.Tx) error {
				_, err := tx.ExecContext(ctx, "SELECT 1")
				return err
			}, sqladapter.WithAttempts(1))
		}, func(f *pgproto3.ErrorResponse) outcome {
			return outcome{sqladapter.KindConnection, f.Code, f.Message, sqladapter.OutcomeUnknown, []error{sqladapter.ErrConnection}}
		}},
		{"COMMIT", isCommit, func(ctx context.Context, db *sqladapter.DB) error {
			return db.InTx(ctx, func(*sqladapter.Tx) error { return nil })
		}, func(f *pgproto3.ErrorResponse) outcome {
			// The server may have committed before it ended the session.
			return outcome{sqladapter.KindConnection, f.Code, f.Message, sqladapter.OutcomeUnknown, []error{sqladapter.ErrConnection}}
		}},
	}
	for _, f := range fatals {
		for _, c := range cases {
			got := map[driverconf.Driver]outcome{}
			for _, d := range bothDrivers {
				t.Run(f.Code+"/"+c.name+"/"+string(d), func(t *testing.T) {
					s := startFakeServer(t, f, func(sql string) answer {
						if c.fatal(sql) {
							return answerFatal
						}
						return answerOK
					})
					db := openFake(t, s, d)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					err := c.call(ctx, db)
					var e *sqladapter.Error
					if !errors.As(err, &e) {
						t.Fatalf("err = %v (%T), want a *sqladapter.Error", err, err)
					}
					o := outcome{kind: e.Kind, state: e.SQLState, message: e.Message, outcome: e.Outcome()}
					got[d] = o
					want := c.want(f)
					if o.kind != want.kind || o.state != want.state || o.message != want.message || o.outcome != want.outcome {
						t.Errorf("got kind %v, SQLSTATE %q, message %q, outcome %v; want %v, %q, %q, %v (error: %v)",
							o.kind, o.state, o.message, o.outcome, want.kind, want.state, want.message, want.outcome, err)
					}
					for _, target := range want.errorsIs {
						if !errors.Is(err, target) {
							t.Errorf("errors.Is(%v, %v) = false", err, target)
						}
					}
					if errors.Is(err, driver.ErrBadConn) {
						t.Errorf("%v matches driver.ErrBadConn: database/sql would run the statement again", err)
					}
					if !strings.Contains(err.Error(), f.Message) {
						t.Errorf("message %q lacks the server's %q", err.Error(), f.Message)
					}
					// The driver's own error type stays reachable.
					var pgErr *pgconn.PgError
					var pqErr *pq.Error
					if !errors.As(err, &pgErr) && !errors.As(err, &pqErr) {
						t.Errorf("neither *pgconn.PgError nor *pq.Error in %v", err)
					}
				})
			}
			if a, b := got[driverconf.PGX], got[driverconf.PQ]; a.kind != b.kind || a.state != b.state || a.message != b.message || a.outcome != b.outcome {
				t.Errorf("%s %s: pgx gives %+v, lib/pq %+v", f.Code, c.name, a, b)
			}
		}
	}
}

// TestServerFatalAtStartup: a FATAL in answer to the startup message
// (PgBouncer refusing a client) carries the server's SQLSTATE on both
// drivers.
func TestServerFatalAtStartup(t *testing.T) {
	t.Parallel()
	f := &pgproto3.ErrorResponse{Severity: "FATAL", Code: "08P01",
		Message: "server login has been failing, try again later (server_login_retry)"}
	for _, d := range bothDrivers {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			s := startFakeServer(t, f, func(string) answer { return answerOK })
			s.atStartup = true
			db := openFake(t, s, d)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := db.ExecContext(ctx, "SELECT 1")
			var e *sqladapter.Error
			if !errors.As(err, &e) || e.Kind != sqladapter.KindConnection || e.SQLState != f.Code || e.Message != f.Message {
				t.Fatalf("err = %v, want a connection failure with SQLSTATE %s and the server's message", err, f.Code)
			}
			if e.Outcome() != sqladapter.OutcomeNotRun {
				t.Errorf("outcome %v, want %v: the connection never started", e.Outcome(), sqladapter.OutcomeNotRun)
			}
		})
	}
}

// TestNoCancelRequestThroughAPooler: behind a pooler, a context that ends
// mid-statement sends no CancelRequest (PgBouncer 1.18 can exit on one) on
// either driver, in session mode with settings too — there lib/pq's
// connector is wrapped to apply them, and the wrapper used to hide it from
// sqladapter.NewConnector, which then left lib/pq its own dialer: cancel
// requests reached the pooler, and a statement whose connection broke
// after it was sent was run again by database/sql.
func TestNoCancelRequestThroughAPooler(t *testing.T) {
	t.Parallel()
	for _, mode := range []driverconf.PoolMode{driverconf.Session, driverconf.Transaction} {
		for _, settings := range []bool{false, true} {
			for _, d := range bothDrivers {
				name := fmt.Sprintf("%s/settings=%v/%s", mode, settings, d)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					s := startFakeServer(t, nil, func(sql string) answer {
						if strings.Contains(sql, "pg_sleep") {
							return answerStall
						}
						return answerOK
					})
					cfg, err := driverconf.Parse(s.url())
					if err != nil {
						t.Fatal(err)
					}
					cfg.Driver, cfg.PoolMode = d, mode
					if settings {
						cfg.SearchPath = "app"
					}
					db, err := driverconf.Open(cfg)
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					start := time.Now()
					errc := make(chan error, 1)
					go func() {
						_, err := db.ExecContext(ctx, "SELECT pg_sleep(10)")
						errc <- err
					}()
					select {
					case err := <-errc:
						if took := time.Since(start); took > time.Second {
							t.Errorf("returned after %v with a 300ms deadline", took.Round(time.Millisecond))
						}
						if !errors.Is(err, sqladapter.ErrTimeout) {
							t.Errorf("err = %v, want a timeout", err)
						}
					case <-time.After(3 * time.Second):
						// lib/pq waits for the server to act on its cancel
						// request; this one never does.
						t.Errorf("still running 3 s after a 300ms deadline")
					}
					time.Sleep(200 * time.Millisecond) // lib/pq cancels from a goroutine of its own
					if n := s.cancels.Load(); n > 0 {
						t.Errorf("%d CancelRequests reached the pooler", n)
					}
				})
			}
		}
	}
}
