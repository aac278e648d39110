package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // raw pgx, whose own errors are classified too
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// errorsDDL is the schema the error tests violate.
var errorsDDL = []string{
	"CREATE TABLE {s}.parents (id int PRIMARY KEY)",
	`CREATE TABLE {s}.items (
		id        int PRIMARY KEY,
		email     text NOT NULL CONSTRAINT items_email_key UNIQUE,
		parent_id int CONSTRAINT items_parent_fk REFERENCES {s}.parents (id),
		qty       int NOT NULL DEFAULT 0 CONSTRAINT items_qty_check CHECK (qty >= 0),
		code      varchar(3))`,
	"CREATE TABLE {s}.accounts (id int PRIMARY KEY, balance int NOT NULL)",
	"INSERT INTO {s}.parents VALUES (1)",
	"INSERT INTO {s}.items (id, email, parent_id) VALUES (1, 'taken@example.com', 1)",
	"INSERT INTO {s}.accounts VALUES (1, 100), (2, 100)",
}

// pooled reports whether a pooler (session or transaction mode) sits
// between the client and PostgreSQL: it, not the server, answers the
// startup message.
func (tg Target) pooled() bool {
	return tg.Config.WithDefaults().PoolMode != driverconf.Direct
}

// rawDriver is the database/sql name of the target's driver itself, for
// the cases that prove what the raw driver's own errors classify as.
func (tg Target) rawDriver() string {
	if tg.Config.WithDefaults().Driver == driverconf.PQ {
		return "postgres"
	}
	return "pgx"
}

// twoConns serialises, within one run, the tests that hold two server
// connections at once (two open transactions). Behind a transaction
// pooler with a pool of two, two such tests each holding one connection
// and waiting for a second would wait for each other until the pooler
// gives up.
var twoConns sync.Map // *run → *sync.Mutex

func (r *run) twoConns() *sync.Mutex {
	mu, _ := twoConns.LoadOrStore(r, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

// holdTwoConns takes r's two-connection lock for the rest of t.
func (r *run) holdTwoConns(t *testing.T) {
	mu := r.twoConns()
	mu.Lock()
	t.Cleanup(mu.Unlock)
}

// ctxHandle is a poolsafe handle or a raw driver's *sql.DB.
type ctxHandle interface {
	PingContext(ctx context.Context) error
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	Close() error
}

func errorTests(t *testing.T, r *run) {
	// Constraint violations: the class, and the constraint, table, column
	// and schema the server names.
	r.test(t, "UniqueViolation", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		_, err := e.db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".items (id, email) VALUES ($1, $2)", 2, "taken@example.com")
		x := wantClass(t, e.ctx, err, sqladapter.ErrConflict, "23505", true)
		if x.Constraint != "items_email_key" || x.Table != "items" || x.Schema != e.schema {
			t.Errorf("constraint, table, schema = %q, %q, %q", x.Constraint, x.Table, x.Schema)
		}
		if !strings.Contains(x.Detail, "already exists") {
			t.Errorf("Detail = %q", x.Detail)
		}
		want := `poolsafe: conflict: duplicate key value violates unique constraint "items_email_key" (SQLSTATE 23505, constraint items_email_key)`
		if got := x.Error(); got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	})
	// Preparing two statements at once fails alike on both drivers: the
	// server's 42601, or poolsafe's own check where lib/pq would splice
	// the SQL into a simple query (transaction mode).
	r.test(t, "PrepareTwoStatements", func(t *testing.T) {
		e := r.newEnv(t)
		stmt, err := e.db.PrepareContext(e.ctx, "SELECT 1; SELECT 2")
		if err == nil {
			stmt.Close()
			t.Fatal("Prepare of two statements succeeded")
		}
		var x *sqladapter.Error
		if !errors.As(err, &x) || x.SQLState != "42601" || !strings.Contains(x.Message, "cannot insert multiple commands into a prepared statement") {
			t.Errorf("Prepare of two statements = %v, want SQLSTATE 42601, \"cannot insert multiple commands into a prepared statement\"", err)
		}
	})
	r.test(t, "ForeignKeyViolation", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		_, err := e.db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".items (id, email, parent_id) VALUES ($1, $2, $3)", 3, "fk@example.com", 999)
		x := wantClass(t, e.ctx, err, sqladapter.ErrForeignKey, "23503", true)
		if x.Constraint != "items_parent_fk" || x.Table != "items" || x.Schema != e.schema {
			t.Errorf("constraint, table, schema = %q, %q, %q", x.Constraint, x.Table, x.Schema)
		}
	})
	r.test(t, "NotNullViolation", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		_, err := e.db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".items (id, email) VALUES ($1, $2)", 4, nil)
		x := wantClass(t, e.ctx, err, sqladapter.ErrNotNull, "23502", true)
		if x.Column != "email" || x.Table != "items" || x.Schema != e.schema {
			t.Errorf("column, table, schema = %q, %q, %q", x.Column, x.Table, x.Schema)
		}
	})
	r.test(t, "CheckViolation", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		_, err := e.db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".items (id, email, qty) VALUES ($1, $2, $3)", 5, "check@example.com", -1)
		x := wantClass(t, e.ctx, err, sqladapter.ErrCheck, "23514", true)
		if x.Constraint != "items_qty_check" || x.Table != "items" || x.Schema != e.schema {
			t.Errorf("constraint, table, schema = %q, %q, %q", x.Constraint, x.Table, x.Schema)
		}
	})

	// Invalid input: SQLSTATE class 22, raised while the result is read.
	for _, c := range []struct{ name, query, code string }{
		{"InvalidTextRepresentation", "SELECT 'x'::int", "22P02"},
		{"DivisionByZero", "SELECT 1 / 0", "22012"},
		{"NumericOutOfRange", "SELECT 2147483647::int + 1", "22003"},
	} {
		r.test(t, c.name, func(t *testing.T) {
			e := r.newEnv(t)
			var v int
			err := e.db.QueryRowContext(e.ctx, c.query).Scan(&v)
			wantClass(t, e.ctx, err, sqladapter.ErrInvalidInput, c.code, true)
		})
	}
	r.test(t, "StringTooLong", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		_, err := e.db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".items (id, email, code) VALUES ($1, $2, $3)", 6, "long@example.com", "toolong")
		wantClass(t, e.ctx, err, sqladapter.ErrInvalidInput, "22001", true)
	})

	// Server-side timeouts.
	r.test(t, "StatementTimeout", func(t *testing.T) {
		e := r.newEnv(t)
		tx, err := e.db.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(e.ctx, "SET LOCAL statement_timeout = '50ms'"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.ExecContext(e.ctx, "SELECT pg_sleep(1)")
		wantClass(t, e.ctx, err, sqladapter.ErrTimeout, "57014", true)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("a server statement timeout matches a context error: %v", err)
		}
	})
	r.test(t, "LockTimeout", func(t *testing.T) {
		e := r.newEnv(t, errorsDDL...)
		r.holdTwoConns(t)
		holder, err := e.db.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Rollback()
		if _, err := holder.ExecContext(e.ctx, "SELECT id FROM "+e.schema+".accounts WHERE id = 2 FOR UPDATE"); err != nil {
			t.Fatal(err)
		}
		waiter, err := e.db.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer waiter.Rollback()
		if _, err := waiter.ExecContext(e.ctx, "SET LOCAL lock_timeout = '50ms'"); err != nil {
			t.Fatal(err)
		}
		_, err = waiter.ExecContext(e.ctx, "UPDATE "+e.schema+".accounts SET balance = balance + 1 WHERE id = 2")
		wantClass(t, e.ctx, err, sqladapter.ErrTimeout, "55P03", true)
	})

	// A context that ends while its statement runs on the server: through
	// poolsafe, and through the raw driver with its defaults (whose errors
	// only ClassifyContext sees). The context ends once pg_stat_activity
	// shows the statement running, not on a timer: a cancel request for a
	// client still queued in a pooler is dropped, and the statement would
	// run to its end. Both handles connect through a relay of the test's
	// own, not the run's tap, and the test waits until the pooler has
	// closed every connection, the cancel request's included: a cancel
	// request cut off by its client (the tap closes at the end of the
	// target) makes PgBouncer 1.18 exit (pgbouncer issue #801).
	for _, h := range []struct {
		name string
		open func(t *testing.T, e *env, u string) ctxHandle
	}{
		{"", func(t *testing.T, e *env, u string) ctxHandle {
			cfg := e.raw
			cfg.URL = u
			return openDB(t, cfg)
		}},
		{"RawDriver", func(t *testing.T, e *env, u string) ctxHandle { return r.openRaw(t, u) }},
	} {
		for _, c := range []struct {
			name     string
			deadline bool
		}{{"ContextDeadline", true}, {"ContextCancel", false}} {
			r.test(t, c.name+h.name, func(t *testing.T) {
				e := r.newEnv(t)
				u, rl := startRelay(t, e.raw.URL)
				db := h.open(t, e, u)
				if err := db.PingContext(e.ctx); err != nil { // connected before the statement starts
					t.Fatal(err)
				}
				var ctx context.Context
				var end func()
				want, wantCtx, notCtx := sqladapter.ErrCanceled, context.Canceled, context.DeadlineExceeded
				if c.deadline {
					d := newDeadlineCtx(e.ctx)
					ctx, end = d, d.pass
					want, wantCtx, notCtx = sqladapter.ErrTimeout, context.DeadlineExceeded, context.Canceled
				} else {
					ctx, end = context.WithCancel(e.ctx)
				}
				defer end()
				done := make(chan error, 1)
				go func() {
					_, err := db.ExecContext(ctx, "SELECT pg_sleep(5) /* "+e.schema+" context */")
					done <- err
				}()
				waitServer(t, e, "state = 'active'", "% "+e.schema+" context %", done)
				start := time.Now()
				end()
				err := <-done
				if d := time.Since(start); d > 4*time.Second {
					t.Errorf("the query ran %v after the context ended: it did not stop it", d)
				}
				got := sqladapter.ClassifyContext(ctx, err)
				t.Logf("returned %T %v; classified %v", err, err, got)
				errsOnly(t, got, want)
				if !errors.Is(got, wantCtx) || errors.Is(got, notCtx) {
					t.Errorf("errors.Is(%v, %v) = %t, (%v) = %t", got, wantCtx, errors.Is(got, wantCtx), notCtx, errors.Is(got, notCtx))
				}
				db.Close()
				rl.waitClosed(t)
			})
		}
	}

	// Retryable failures, provoked deterministically.
	r.test(t, "SerializationFailure", func(t *testing.T) {
		// Both read row 1 before either writes; the second writer finds
		// the row changed since its snapshot. No step blocks, so one
		// goroutine drives both transactions.
		e := r.newEnv(t, errorsDDL...)
		r.holdTwoConns(t)
		ctx, s := e.ctx, e.schema
		opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
		t1, err := e.db.BeginTx(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer t1.Rollback()
		t2, err := e.db.BeginTx(ctx, opts)
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
		wantClass(t, ctx, err, sqladapter.ErrSerialization, "40001", true)
		if !sqladapter.Retryable(err) {
			t.Errorf("Retryable(%v) = false", err)
		}
	})
	r.test(t, "Deadlock", func(t *testing.T) {
		// t1 locks row 1 and t2 row 2; t1 then waits for row 2, and once
		// the server shows it waiting (watched over DirectURL), t2 asks
		// for row 1.
		e := r.newEnv(t, errorsDDL...)
		r.holdTwoConns(t)
		ctx, s := e.ctx, e.schema
		t1, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer t1.Rollback()
		t2, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer t2.Rollback()
		// Where the role may (a superuser), t2 — the second to wait —
		// looks for the deadlock after 20ms instead of t1 after the
		// default deadlock_timeout (1s). Either way exactly one fails.
		var superuser bool
		if err := e.direct.QueryRowContext(ctx, "SELECT current_setting('is_superuser') = 'on'").Scan(&superuser); err != nil {
			t.Fatal(err)
		}
		if superuser {
			if _, err := t2.ExecContext(ctx, "SET LOCAL deadlock_timeout = '20ms'"); err != nil {
				t.Fatal(err)
			}
		}
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
		waitServer(t, e, "wait_event_type = 'Lock'", fmt.Sprintf("%% %s deadlock t1b %%", s), done)
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
		wantClass(t, ctx, lost, sqladapter.ErrDeadlock, "40P01", true)
		if !sqladapter.Retryable(lost) {
			t.Errorf("Retryable(%v) = false", lost)
		}
	})

	// What a pooler cannot serve, from the raw driver (poolsafe itself
	// never sends it): a startup parameter, and named prepared statements.
	r.test(t, "PoolerStartupParameter", func(t *testing.T) {
		// A pooler (PgBouncer, session or transaction mode) refuses the
		// unknown startup parameter with 08P01; PostgreSQL itself with a
		// FATAL 42704. Both are ErrPoolerIncompatible.
		code := "42704"
		if r.target.pooled() {
			code = "08P01"
		}
		e := r.newEnv(t)
		raw := r.openRaw(t, withParam(e.raw.URL, "pgbouncer=true"))
		err := raw.PingContext(e.ctx)
		x := wantClass(t, e.ctx, err, sqladapter.ErrPoolerIncompatible, code, false)
		for _, w := range []string{`"pgbouncer"`, "driverconf.Parse"} {
			if !strings.Contains(x.Error(), w) {
				t.Errorf("%q does not say %s", x.Error(), w)
			}
		}
	})
	r.test(t, "PoolerPreparedStatements", func(t *testing.T) {
		if !r.target.swapsConnections() {
			t.Skip("capability: the target keeps one server connection per client connection, so named statements stay valid")
		}
		e := r.newEnv(t)
		t.Cleanup(func() { r.deallocateAll(t, e.raw) })
		err := provokePrepared(e.ctx, t, r.target.rawDriver(), e.raw.URL, e.schema)
		x := wantClass(t, e.ctx, err, sqladapter.ErrPoolerIncompatible, sqlState(err), false)
		if x.SQLState != "42P05" && x.SQLState != "26000" {
			t.Errorf("SQLSTATE %s, want 42P05 or 26000", x.SQLState)
		}
		for _, w := range []string{"prepared statements", "default_query_exec_mode=exec", "binary_parameters=yes"} {
			if !strings.Contains(x.Error(), w) {
				t.Errorf("%q does not say %s", x.Error(), w)
			}
		}
	})
}

// wantClass classifies err (as returned under ctx), checks it matches want
// and no other sentinel, has SQLSTATE code and still exposes a driver's
// own server error, and returns it. With poolsafe set, err came from a
// poolsafe handle, which must have classified it already.
func wantClass(t *testing.T, ctx context.Context, err, want error, code string, poolsafe bool) *sqladapter.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v (SQLSTATE %s)", want, code)
	}
	if poolsafe && !errors.Is(err, want) {
		t.Errorf("poolsafe returned %T %v, which errors.Is does not match to %v without Classify", err, err, want)
	}
	got := sqladapter.ClassifyContext(ctx, err)
	t.Logf("%v", got)
	errsOnly(t, got, want)
	x := errsAs(t, got)
	if x.SQLState != code {
		t.Errorf("SQLState = %q, want %q", x.SQLState, code)
	}
	if code != "" {
		var pgxErr *pgconn.PgError
		var pqErr *pq.Error
		if !errors.As(got, &pgxErr) && !errors.As(got, &pqErr) {
			t.Errorf("errors.As to *pgconn.PgError or *pq.Error fails on %v", got)
		}
	}
	return x
}

// errSentinels are all of sqladapter's sentinels.
var errSentinels = []error{
	sqladapter.ErrNotFound, sqladapter.ErrConflict, sqladapter.ErrForeignKey, sqladapter.ErrNotNull,
	sqladapter.ErrCheck, sqladapter.ErrInvalidInput, sqladapter.ErrSerialization, sqladapter.ErrDeadlock,
	sqladapter.ErrCanceled, sqladapter.ErrTimeout, sqladapter.ErrConnection, sqladapter.ErrPoolerIncompatible,
}

// errsOnly fails unless err matches want and no other sentinel.
func errsOnly(t *testing.T, err, want error) {
	t.Helper()
	for _, s := range errSentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %v) = %t, want %t", err, s, got, !got)
		}
	}
}

// errsAs returns err's *sqladapter.Error or fails.
func errsAs(t *testing.T, err error) *sqladapter.Error {
	t.Helper()
	var x *sqladapter.Error
	if !errors.As(err, &x) {
		t.Fatalf("%T %v is not a *sqladapter.Error", err, err)
	}
	return x
}

// openRaw opens the target's driver itself, with its defaults, on rawURL
// (not through the run's tap).
func (r *run) openRaw(t *testing.T, rawURL string) *sql.DB {
	t.Helper()
	db, err := sql.Open(r.target.rawDriver(), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// withParam adds a query parameter to a URL.
func withParam(rawURL, kv string) string {
	if strings.Contains(rawURL, "?") {
		return rawURL + "&" + kv
	}
	return rawURL + "?" + kv
}

// provokePrepared uses the raw driver with its defaults through the
// transaction pooler from two client connections, the way a program that
// does not know about the pooler would, until a named prepared statement
// lands on a server connection that already has one of that name (or lacks
// it). pgx's statement cache and lib/pq's Prepare name statements per client
// connection; PgBouncer hands the most recently used server connection to
// the next client, so this usually fails on the first round.
func provokePrepared(ctx context.Context, t *testing.T, raw, rawURL, tag string) error {
	t.Helper()
	db, err := sql.Open(raw, rawURL)
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

func sqlState(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return st.SQLState()
	}
	return ""
}

// deallocateAll removes the named statements the raw driver left on the
// transaction pooler's server connections: one transaction per server
// connection (the local stack's pool has two), held open together so each
// lands on a different one.
func (r *run) deallocateAll(t *testing.T, cfg driverconf.Config) {
	mu := r.twoConns()
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := driverconf.Open(cfg)
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

// waitServer polls pg_stat_activity over DirectURL until a backend whose
// query text matches the LIKE pattern marker meets cond, and fails t if
// done (the statement's result) arrives first.
func waitServer(t *testing.T, e *env, cond, marker string, done <-chan error) {
	t.Helper()
	q := "SELECT count(*) > 0 FROM pg_stat_activity WHERE " + cond + " AND query LIKE $1"
	for {
		var ok bool
		if err := e.direct.QueryRowContext(e.ctx, q, marker).Scan(&ok); err != nil {
			t.Fatalf("watch pg_stat_activity: %v", err)
		}
		if ok {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the statement finished before the server showed %s: %v", cond, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// deadlineCtx is a context whose deadline passes when pass is called: Err
// is then context.DeadlineExceeded, as after a real deadline, at a moment
// the test chooses.
type deadlineCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newDeadlineCtx(parent context.Context) *deadlineCtx {
	return &deadlineCtx{Context: parent, done: make(chan struct{})}
}

func (c *deadlineCtx) pass()                 { c.once.Do(func() { close(c.done) }) }
func (c *deadlineCtx) Done() <-chan struct{} { return c.done }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// relay forwards TCP connections to one host and counts those still open.
type relay struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	open     int
}

// startRelay starts a relay in front of a postgres:// URL's host and
// returns the URL pointed at it; a URL without a single TCP host is
// returned unchanged, with a nil relay.
func startRelay(t *testing.T, rawURL string) (string, *relay) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.Contains(u.Host, ",") {
		return rawURL, nil
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream += ":5432"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	rl := &relay{ln: ln, upstream: upstream}
	go rl.accept()
	u.Host = ln.Addr().String()
	return u.String(), rl
}

func (rl *relay) accept() {
	for {
		c, err := rl.ln.Accept()
		if err != nil {
			return
		}
		rl.mu.Lock()
		rl.open++
		rl.mu.Unlock()
		go rl.serve(c)
	}
}

// serve copies both ways; when either side closes, it closes both.
func (rl *relay) serve(c net.Conn) {
	defer func() {
		rl.mu.Lock()
		rl.open--
		rl.mu.Unlock()
	}()
	defer c.Close()
	s, err := net.Dial("tcp", rl.upstream)
	if err != nil {
		return
	}
	defer s.Close()
	up := make(chan struct{})
	go func() {
		defer close(up)
		_, _ = io.Copy(s, c)
		s.Close()
	}()
	_, _ = io.Copy(c, s)
	c.Close()
	<-up
}

// waitClosed waits until every relayed connection has been closed (by the
// client, or by the server: a cancel request's ends when the server has
// forwarded it).
func (rl *relay) waitClosed(t *testing.T) {
	t.Helper()
	if rl == nil {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rl.mu.Lock()
		n := rl.open
		rl.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d connections still open 30s after the handle was closed", n)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
