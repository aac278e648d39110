package sqladapter_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// errsDriver is one driver the integration test runs on.
type errsDriver struct {
	name   string
	driver driverconf.Driver
	raw    string // its own database/sql driver name
	// isDriverError reports whether errors.As finds the driver's own
	// server error type in err.
	isDriverError func(err error) bool
}

var errsDrivers = []errsDriver{
	{"pgx", driverconf.PGX, "pgx", func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe)
	}},
	{"pq", driverconf.PQ, "postgres", func(err error) bool {
		var pe *pq.Error
		return errors.As(err, &pe)
	}},
}

// errsEnv is what each error test needs.
type errsEnv struct {
	drv    errsDriver
	urls   testdb.URLs
	schema string
	direct *sql.DB // PostgreSQL itself, for setup and observation
	tx     *sql.DB // through the transaction pooler, as the application would
}

// newErrsEnv creates a fresh schema with the tables the tests violate and
// opens the driver through the transaction pooler.
func newErrsEnv(t *testing.T, drv errsDriver) *errsEnv {
	t.Helper()
	u := testdb.Get(t)
	direct, err := driverconf.OpenDB(driverconf.Config{URL: u.Direct, Driver: driverconf.PGX, PoolMode: driverconf.Direct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	testdb.Ping(t, direct)

	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	s := "errs_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ddl := []string{
		"CREATE SCHEMA " + s,
		"CREATE TABLE " + s + ".parents (id int PRIMARY KEY)",
		"CREATE TABLE " + s + `.items (
			id        int PRIMARY KEY,
			email     text NOT NULL CONSTRAINT items_email_key UNIQUE,
			parent_id int CONSTRAINT items_parent_fk REFERENCES ` + s + `.parents (id),
			qty       int NOT NULL DEFAULT 0 CONSTRAINT items_qty_check CHECK (qty >= 0),
			code      varchar(3))`,
		"CREATE TABLE " + s + ".accounts (id int PRIMARY KEY, balance int NOT NULL)",
		"INSERT INTO " + s + ".parents VALUES (1)",
		"INSERT INTO " + s + ".items (id, email, parent_id) VALUES (1, 'taken@example.com', 1)",
		"INSERT INTO " + s + ".accounts VALUES (1, 100), (2, 100)",
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := direct.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", s, err)
		}
	})
	for _, q := range ddl {
		if _, err := direct.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	tx, err := driverconf.OpenDB(driverconf.Config{URL: u.Tx, Driver: drv.driver, PoolMode: driverconf.Transaction, MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	testdb.Ping(t, tx)
	return &errsEnv{drv: drv, urls: u, schema: s, direct: direct, tx: tx}
}

// errsCtx bounds one test step, so a stuck pooler fails the test instead of
// hanging it.
func errsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantClass classifies err (as returned under ctx), checks it matches want
// and no other sentinel, has SQLSTATE code and still exposes the driver's
// own error, and returns it.
func (env *errsEnv) wantClass(t *testing.T, ctx context.Context, err, want error, code string) *sqladapter.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v (SQLSTATE %s)", want, code)
	}
	got := sqladapter.ClassifyContext(ctx, err)
	t.Logf("%s: %v", env.drv.name, got)
	errsOnly(t, got, want)
	e := errsAs(t, got)
	if e.SQLState != code {
		t.Errorf("SQLState = %q, want %q", e.SQLState, code)
	}
	if code != "" && !env.drv.isDriverError(got) {
		t.Errorf("errors.As to %s's error type fails on %v", env.drv.name, got)
	}
	return e
}

// errsWithParam adds a query parameter to a URL.
func errsWithParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}

func TestErrorsIntegration(t *testing.T) {
	for _, drv := range errsDrivers {
		t.Run(drv.name, func(t *testing.T) {
			env := newErrsEnv(t, drv)
			s := env.schema
			t.Run("unique_violation", func(t *testing.T) {
				ctx := errsCtx(t)
				_, err := env.tx.ExecContext(ctx, "INSERT INTO "+s+".items (id, email) VALUES ($1, $2)", 2, "taken@example.com")
				e := env.wantClass(t, ctx, err, sqladapter.ErrConflict, "23505")
				if e.Constraint != "items_email_key" || e.Table != "items" || e.Schema != s {
					t.Errorf("constraint, table, schema = %q, %q, %q", e.Constraint, e.Table, e.Schema)
				}
				if !strings.Contains(e.Detail, "already exists") {
					t.Errorf("Detail = %q", e.Detail)
				}
				want := `poolsafe: conflict: duplicate key value violates unique constraint "items_email_key" (SQLSTATE 23505, constraint items_email_key)`
				if got := e.Error(); got != want {
					t.Errorf("Error() = %q, want %q", got, want)
				}
			})
			t.Run("foreign_key_violation", func(t *testing.T) {
				ctx := errsCtx(t)
				_, err := env.tx.ExecContext(ctx, "INSERT INTO "+s+".items (id, email, parent_id) VALUES ($1, $2, $3)", 3, "fk@example.com", 999)
				e := env.wantClass(t, ctx, err, sqladapter.ErrForeignKey, "23503")
				if e.Constraint != "items_parent_fk" || e.Table != "items" || e.Schema != s {
					t.Errorf("constraint, table, schema = %q, %q, %q", e.Constraint, e.Table, e.Schema)
				}
			})
			t.Run("not_null_violation", func(t *testing.T) {
				ctx := errsCtx(t)
				_, err := env.tx.ExecContext(ctx, "INSERT INTO "+s+".items (id, email) VALUES ($1, $2)", 4, nil)
				e := env.wantClass(t, ctx, err, sqladapter.ErrNotNull, "23502")
				if e.Column != "email" || e.Table != "items" || e.Schema != s {
					t.Errorf("column, table, schema = %q, %q, %q", e.Column, e.Table, e.Schema)
				}
			})
			t.Run("check_violation", func(t *testing.T) {
				ctx := errsCtx(t)
				_, err := env.tx.ExecContext(ctx, "INSERT INTO "+s+".items (id, email, qty) VALUES ($1, $2, $3)", 5, "check@example.com", -1)
				e := env.wantClass(t, ctx, err, sqladapter.ErrCheck, "23514")
				if e.Constraint != "items_qty_check" || e.Table != "items" || e.Schema != s {
					t.Errorf("constraint, table, schema = %q, %q, %q", e.Constraint, e.Table, e.Schema)
				}
			})
			for _, c := range []struct{ name, query, code string }{
				{"invalid_input", "SELECT 'x'::int", "22P02"},
				{"division_by_zero", "SELECT 1 / 0", "22012"},
				{"numeric_out_of_range", "SELECT 2147483647::int + 1", "22003"},
			} {
				t.Run(c.name, func(t *testing.T) {
					ctx := errsCtx(t)
					var v int
					err := env.tx.QueryRowContext(ctx, c.query).Scan(&v)
					env.wantClass(t, ctx, err, sqladapter.ErrInvalidInput, c.code)
				})
			}
			t.Run("string_too_long", func(t *testing.T) {
				ctx := errsCtx(t)
				_, err := env.tx.ExecContext(ctx, "INSERT INTO "+s+".items (id, email, code) VALUES ($1, $2, $3)", 6, "long@example.com", "toolong")
				env.wantClass(t, ctx, err, sqladapter.ErrInvalidInput, "22001")
			})
			t.Run("statement_timeout", func(t *testing.T) {
				ctx := errsCtx(t)
				tx, err := env.tx.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, "SET LOCAL statement_timeout = '50ms'"); err != nil {
					t.Fatal(err)
				}
				_, err = tx.ExecContext(ctx, "SELECT pg_sleep(1)")
				env.wantClass(t, ctx, err, sqladapter.ErrTimeout, "57014")
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					t.Errorf("a server statement timeout matches a context error: %v", err)
				}
			})
			t.Run("lock_timeout", func(t *testing.T) {
				ctx := errsCtx(t)
				holder, err := env.tx.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer holder.Rollback()
				if _, err := holder.ExecContext(ctx, "SELECT id FROM "+s+".accounts WHERE id = 2 FOR UPDATE"); err != nil {
					t.Fatal(err)
				}
				waiter, err := env.tx.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer waiter.Rollback()
				if _, err := waiter.ExecContext(ctx, "SET LOCAL lock_timeout = '50ms'"); err != nil {
					t.Fatal(err)
				}
				_, err = waiter.ExecContext(ctx, "UPDATE "+s+".accounts SET balance = balance + 1 WHERE id = 2")
				env.wantClass(t, ctx, err, sqladapter.ErrTimeout, "55P03")
			})
			// Through poolsafe, and through the raw driver (whose errors
			// only ClassifyContext sees).
			raw, err := sql.Open(drv.raw, env.urls.Tx)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, h := range []struct {
				name string
				db   *sql.DB
			}{{"", env.tx}, {"_raw_driver", raw}} {
				t.Run("context_deadline"+h.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
					defer cancel()
					start := time.Now()
					_, err := h.db.ExecContext(ctx, "SELECT pg_sleep(5)")
					if d := time.Since(start); d > 4*time.Second {
						t.Errorf("the query ran %v: the deadline did not stop it", d)
					}
					got := sqladapter.ClassifyContext(ctx, err)
					t.Logf("%s: returned %T %v; classified %v", drv.name, err, err, got)
					errsOnly(t, got, sqladapter.ErrTimeout)
					if !errors.Is(got, context.DeadlineExceeded) || errors.Is(got, context.Canceled) {
						t.Errorf("errors.Is(%v, context.DeadlineExceeded) = %t, (context.Canceled) = %t",
							got, errors.Is(got, context.DeadlineExceeded), errors.Is(got, context.Canceled))
					}
				})
				t.Run("context_cancel"+h.name, func(t *testing.T) {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					stop := time.AfterFunc(100*time.Millisecond, cancel)
					defer stop.Stop()
					start := time.Now()
					_, err := h.db.ExecContext(ctx, "SELECT pg_sleep(5)")
					if d := time.Since(start); d > 4*time.Second {
						t.Errorf("the query ran %v: cancel did not stop it", d)
					}
					got := sqladapter.ClassifyContext(ctx, err)
					t.Logf("%s: returned %T %v; classified %v", drv.name, err, err, got)
					errsOnly(t, got, sqladapter.ErrCanceled)
					if !errors.Is(got, context.Canceled) || errors.Is(got, context.DeadlineExceeded) {
						t.Errorf("errors.Is(%v, context.Canceled) = %t, (context.DeadlineExceeded) = %t",
							got, errors.Is(got, context.Canceled), errors.Is(got, context.DeadlineExceeded))
					}
				})
			}
			t.Run("serialization_failure", func(t *testing.T) {
				// Both read row 1 before either writes; the second writer
				// finds the row changed since its snapshot. No step blocks, so
				// one goroutine drives both transactions.
				ctx := errsCtx(t)
				opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
				t1, err := env.tx.BeginTx(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer t1.Rollback()
				t2, err := env.tx.BeginTx(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer t2.Rollback()
				read := "SELECT balance FROM " + s + ".accounts WHERE id = 1"
				write := "UPDATE " + s + ".accounts SET balance = balance - 10 WHERE id = 1"
				var b1, b2 int
				if err := t1.QueryRowContext(ctx, read).Scan(&b1); err != nil {
					t.Fatal(err)
				}
				if err := t2.QueryRowContext(ctx, read).Scan(&b2); err != nil {
					t.Fatal(err)
				}
				if _, err := t1.ExecContext(ctx, write); err != nil {
					t.Fatal(err)
				}
				if err := t1.Commit(); err != nil {
					t.Fatal(err)
				}
				_, err = t2.ExecContext(ctx, write)
				env.wantClass(t, ctx, err, sqladapter.ErrSerialization, "40001")
				if !sqladapter.Retryable(err) {
					t.Errorf("Retryable(%v) = false", err)
				}
			})
			t.Run("deadlock", func(t *testing.T) {
				// t1 locks row 1 and t2 row 2; t1 then waits for row 2, and
				// once the server shows it waiting, t2 asks for row 1.
				ctx := errsCtx(t)
				t1, err := env.tx.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer t1.Rollback()
				t2, err := env.tx.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer t2.Rollback()
				update := "UPDATE " + s + ".accounts SET balance = balance + 1 WHERE id = %d /* %s deadlock %s */"
				if _, err := t1.ExecContext(ctx, fmt.Sprintf(update, 1, s, "t1a")); err != nil {
					t.Fatal(err)
				}
				if _, err := t2.ExecContext(ctx, fmt.Sprintf(update, 2, s, "t2a")); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() {
					_, err := t1.ExecContext(ctx, fmt.Sprintf(update, 2, s, "t1b"))
					done <- err
				}()
				marker := fmt.Sprintf("%% %s deadlock t1b %%", s)
				for waiting := false; !waiting; {
					if err := env.direct.QueryRowContext(ctx,
						"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
						marker).Scan(&waiting); err != nil {
						t.Fatalf("watch t1: %v", err)
					}
					if !waiting {
						select {
						case err := <-done:
							t.Fatalf("t1 finished without waiting for t2's lock: %v", err)
						case <-time.After(20 * time.Millisecond):
						}
					}
				}
				_, err2 := t2.ExecContext(ctx, fmt.Sprintf(update, 1, s, "t2b"))
				err1 := <-done
				var lost error
				switch {
				case err1 != nil && err2 == nil:
					lost = err1
				case err2 != nil && err1 == nil:
					lost = err2
				default:
					t.Fatalf("want exactly one transaction to fail: t1: %v; t2: %v", err1, err2)
				}
				env.wantClass(t, ctx, lost, sqladapter.ErrDeadlock, "40P01")
				if !sqladapter.Retryable(lost) {
					t.Errorf("Retryable(%v) = false", lost)
				}
			})
			t.Run("pooler_startup_parameter", func(t *testing.T) {
				for _, c := range []struct {
					name, url, code string
				}{
					{"transaction_pooler", env.urls.Tx, "08P01"},
					{"direct", env.urls.Direct, "42704"},
				} {
					t.Run(c.name, func(t *testing.T) {
						ctx := errsCtx(t)
						raw, err := sql.Open(drv.raw, errsWithParam(c.url, "pgbouncer=true"))
						if err != nil {
							t.Fatal(err)
						}
						defer raw.Close()
						err = raw.PingContext(ctx)
						e := env.wantClass(t, ctx, err, sqladapter.ErrPoolerIncompatible, c.code)
						for _, w := range []string{`"pgbouncer"`, "driverconf.Parse"} {
							if !strings.Contains(e.Error(), w) {
								t.Errorf("%q does not say %s", e.Error(), w)
							}
						}
					})
				}
			})
			t.Run("pooler_prepared_statements", func(t *testing.T) {
				ctx := errsCtx(t)
				t.Cleanup(func() { errsDeallocateAll(t, env.urls.Tx) })
				err := errsProvokePrepared(ctx, t, drv.raw, env.urls.Tx, s)
				e := env.wantClass(t, ctx, err, sqladapter.ErrPoolerIncompatible, errsSQLState(err))
				if e.SQLState != "42P05" && e.SQLState != "26000" {
					t.Errorf("SQLSTATE %s, want 42P05 or 26000", e.SQLState)
				}
				for _, w := range []string{"prepared statements", "default_query_exec_mode=exec", "binary_parameters=yes"} {
					if !strings.Contains(e.Error(), w) {
						t.Errorf("%q does not say %s", e.Error(), w)
					}
				}
			})
		})
	}
}

// errsProvokePrepared uses the raw driver with its defaults through the
// transaction pooler from two client connections, the way a program that
// does not know about the pooler would, until a named prepared statement
// lands on a server connection that already has one of that name (or lacks
// it). pgx's statement cache and lib/pq's Prepare name statements per client
// connection; PgBouncer hands the most recently used server connection to
// the next client, so this usually fails on the first round.
func errsProvokePrepared(ctx context.Context, t *testing.T, raw, url, tag string) error {
	t.Helper()
	db, err := sql.Open(raw, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var conns [2]*sql.Conn
	for i := range conns {
		if conns[i], err = db.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	for round := range 20 {
		q := fmt.Sprintf("SELECT $1::int + %d /* %s prepared %d */", round, tag, round)
		for _, c := range conns {
			if raw == "postgres" {
				st, err := c.PrepareContext(ctx, q)
				if err != nil {
					return err
				}
				defer st.Close()
				continue
			}
			var v int
			if err := c.QueryRowContext(ctx, q, 1).Scan(&v); err != nil {
				return err
			}
		}
	}
	t.Fatalf("%s: 20 rounds of prepared statements through the transaction pooler raised no error", raw)
	return nil
}

func errsSQLState(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return st.SQLState()
	}
	return ""
}

// errsDeallocateAll removes the named statements the raw drivers left on
// the pooler's server connections: one transaction per server connection
// (the pool has two), held open together so each lands on a different one.
func errsDeallocateAll(t *testing.T, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := driverconf.OpenDB(driverconf.Config{URL: url, PoolMode: driverconf.Transaction})
	if err != nil {
		t.Errorf("deallocate: %v", err)
		return
	}
	defer db.Close()
	var txs []*sql.Tx
	defer func() {
		for _, tx := range txs {
			tx.Rollback()
		}
	}()
	for range 2 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Errorf("deallocate: %v", err)
			return
		}
		txs = append(txs, tx)
		if _, err := tx.ExecContext(ctx, "DEALLOCATE ALL"); err != nil {
			t.Errorf("deallocate: %v", err)
			return
		}
	}
	for _, tx := range txs {
		if err := tx.Commit(); err != nil {
			t.Errorf("deallocate: %v", err)
		}
	}
	txs = nil
}
