package sqladapter

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// callLog records the calls a fake driver connection receives.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf(format, args...))
}

func (l *callLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *callLog) has(prefix string) bool {
	return slices.ContainsFunc(l.list(), func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func argValues(args []driver.NamedValue) []any {
	v := make([]any, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}

// fakeConn is a driver connection with every interface database/sql
// prefers except the optional Pinger, SessionResetter and Validator.
type fakeConn struct {
	log *callLog
	// execErrs and queryErrs are returned, one per call, before succeeding.
	mu        sync.Mutex
	execErrs  []error
	queryErrs []error
	// delay makes each statement take at least this long.
	delay time.Duration
}

func (c *fakeConn) nextErr(errs *[]error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

func (c *fakeConn) Prepare(query string) (driver.Stmt, error) {
	c.log.add("Prepare %s", query)
	return &fakeStmt{c: c, query: query}, nil
}

func (c *fakeConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	c.log.add("PrepareContext %s", query)
	return &fakeStmt{c: c, query: query}, nil
}

func (c *fakeConn) Close() error {
	c.log.add("Close")
	return nil
}

func (c *fakeConn) Begin() (driver.Tx, error) {
	c.log.add("Begin")
	return fakeTx{c.log}, nil
}

func (c *fakeConn) BeginTx(_ context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.log.add("BeginTx isolation=%d readonly=%t", opts.Isolation, opts.ReadOnly)
	return fakeTx{c.log}, nil
}

func (c *fakeConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.log.add("ExecContext %s %v", query, argValues(args))
	time.Sleep(c.delay)
	if err := c.nextErr(&c.execErrs); err != nil {
		return nil, err
	}
	return driver.RowsAffected(1), nil
}

func (c *fakeConn) QueryContext(_ context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.log.add("QueryContext %s %v", query, argValues(args))
	time.Sleep(c.delay)
	if err := c.nextErr(&c.queryErrs); err != nil {
		return nil, err
	}
	return &fakeRows{cols: []string{"n"}, data: [][]driver.Value{{int64(1)}}}, nil
}

func (c *fakeConn) CheckNamedValue(nv *driver.NamedValue) error {
	c.log.add("CheckNamedValue %v", nv.Value)
	return nil
}

type fakeTx struct{ log *callLog }

func (t fakeTx) Commit() error   { t.log.add("Commit"); return nil }
func (t fakeTx) Rollback() error { t.log.add("Rollback"); return nil }

type fakeStmt struct {
	c     *fakeConn
	query string
}

func (s *fakeStmt) Close() error  { s.c.log.add("StmtClose %s", s.query); return nil }
func (s *fakeStmt) NumInput() int { return -1 }
func (s *fakeStmt) Exec(args []driver.Value) (driver.Result, error) {
	s.c.log.add("StmtExec %s %v", s.query, args)
	return driver.RowsAffected(1), nil
}

func (s *fakeStmt) Query(args []driver.Value) (driver.Rows, error) {
	s.c.log.add("StmtQuery %s %v", s.query, args)
	return &fakeRows{cols: []string{"n"}}, nil
}

type fakeRows struct {
	cols []string
	data [][]driver.Value
}

func (r *fakeRows) Columns() []string { return r.cols }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if len(r.data) == 0 {
		return io.EOF
	}
	copy(dest, r.data[0])
	r.data = r.data[1:]
	return nil
}

// The optional interfaces, mixed into fakeConn by newFakeBase.

type pingPart struct{ l *callLog }

func (p pingPart) Ping(context.Context) error { p.l.add("Ping"); return nil }

type resetPart struct{ l *callLog }

func (p resetPart) ResetSession(context.Context) error { p.l.add("ResetSession"); return nil }

type validPart struct{ l *callLog }

func (p validPart) IsValid() bool { p.l.add("IsValid"); return true }

// newFakeBase returns a fakeConn implementing exactly the optional
// interfaces asked for.
func newFakeBase(l *callLog, p, r, v bool) driver.Conn {
	c := &fakeConn{log: l}
	pp, rp, vp := pingPart{l}, resetPart{l}, validPart{l}
	switch {
	case p && r && v:
		return struct {
			*fakeConn
			pingPart
			resetPart
			validPart
		}{c, pp, rp, vp}
	case p && r:
		return struct {
			*fakeConn
			pingPart
			resetPart
		}{c, pp, rp}
	case p && v:
		return struct {
			*fakeConn
			pingPart
			validPart
		}{c, pp, vp}
	case r && v:
		return struct {
			*fakeConn
			resetPart
			validPart
		}{c, rp, vp}
	case p:
		return struct {
			*fakeConn
			pingPart
		}{c, pp}
	case r:
		return struct {
			*fakeConn
			resetPart
		}{c, rp}
	case v:
		return struct {
			*fakeConn
			validPart
		}{c, vp}
	}
	return c
}

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("fakeDriver: use a connector")
}

// fakeConnector hands out connections made by newConn.
type fakeConnector struct {
	mu      sync.Mutex
	newConn func() driver.Conn
	n       int
}

func (c *fakeConnector) Connect(context.Context) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.newConn(), nil
}

func (c *fakeConnector) Driver() driver.Driver { return fakeDriver{} }

func (c *fakeConnector) connects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func connect(t *testing.T, base driver.Conn, opts ConnectorOptions) driver.Conn {
	t.Helper()
	wc, err := NewConnector(&fakeConnector{newConn: func() driver.Conn { return base }}, opts).Connect(context.Background())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return wc
}

func TestConnOptionalInterfaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for i := range 8 {
		p, r, v := i&1 != 0, i&2 != 0, i&4 != 0
		t.Run(fmt.Sprintf("pinger=%t,resetter=%t,validator=%t", p, r, v), func(t *testing.T) {
			t.Parallel()
			l := new(callLog)
			wc := connect(t, newFakeBase(l, p, r, v), ConnectorOptions{})

			pi, gotP := wc.(driver.Pinger)
			ri, gotR := wc.(driver.SessionResetter)
			vi, gotV := wc.(driver.Validator)
			// SessionResetter and Validator are always there: they stop the
			// acquire timeout and refuse a connection left in a transaction.
			if gotP != p || !gotR || !gotV {
				t.Fatalf("wrapped conn: Pinger %t, SessionResetter %t, Validator %t; want %t, true, true", gotP, gotR, gotV, p)
			}
			if p {
				if err := pi.Ping(ctx); err != nil || !l.has("Ping") {
					t.Errorf("Ping = %v, passed to base: %t", err, l.has("Ping"))
				}
			}
			if r {
				if err := ri.ResetSession(ctx); err != nil || !l.has("ResetSession") {
					t.Errorf("ResetSession = %v, passed to base: %t", err, l.has("ResetSession"))
				}
			}
			if v {
				if ok := vi.IsValid(); !ok || !l.has("IsValid") {
					t.Errorf("IsValid = %t, passed to base: %t", ok, l.has("IsValid"))
				}
			}

			ec, ok1 := wc.(driver.ExecerContext)
			qc, ok2 := wc.(driver.QueryerContext)
			pc, ok3 := wc.(driver.ConnPrepareContext)
			bt, ok4 := wc.(driver.ConnBeginTx)
			nc, ok5 := wc.(driver.NamedValueChecker)
			if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
				t.Fatalf("wrapped conn: ExecerContext %t, QueryerContext %t, ConnPrepareContext %t, ConnBeginTx %t, NamedValueChecker %t; want all",
					ok1, ok2, ok3, ok4, ok5)
			}
			args := []driver.NamedValue{{Ordinal: 1, Value: "x"}}
			if _, err := ec.ExecContext(ctx, "UPDATE t SET a = $1", args); err != nil {
				t.Errorf("ExecContext: %v", err)
			}
			rows, err := qc.QueryContext(ctx, "SELECT a FROM t WHERE a = $1", args)
			if err != nil {
				t.Fatalf("QueryContext: %v", err)
			}
			rows.Close()
			st, err := pc.PrepareContext(ctx, "DELETE FROM t")
			if err != nil {
				t.Fatalf("PrepareContext: %v", err)
			}
			if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
				t.Errorf("stmt ExecContext: %v", err)
			}
			st.Close()
			tx, err := bt.BeginTx(ctx, driver.TxOptions{Isolation: driver.IsolationLevel(sql.LevelSerializable), ReadOnly: true})
			if err != nil {
				t.Fatalf("BeginTx: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Errorf("Commit: %v", err)
			}
			if err := nc.CheckNamedValue(&driver.NamedValue{Ordinal: 1, Value: "y"}); err != nil {
				t.Errorf("CheckNamedValue: %v", err)
			}
			if err := wc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for _, want := range []string{
				"ExecContext UPDATE t SET a = $1 [x]",
				"QueryContext SELECT a FROM t WHERE a = $1 [x]",
				"PrepareContext DELETE FROM t",
				"StmtExec DELETE FROM t []",
				"StmtClose DELETE FROM t",
				fmt.Sprintf("BeginTx isolation=%d readonly=true", sql.LevelSerializable),
				"Commit",
				"CheckNamedValue y",
				"Close",
			} {
				if !slices.Contains(l.list(), want) {
					t.Errorf("base did not receive %q; calls: %q", want, l.list())
				}
			}
		})
	}
}

func TestUnwrap(t *testing.T) {
	t.Parallel()
	l := new(callLog)
	for _, base := range []driver.Conn{newFakeBase(l, false, false, false), newFakeBase(l, true, true, true), newFakeBase(l, true, false, true)} {
		wc := connect(t, base, ConnectorOptions{})
		if got := Unwrap(wc); got != base {
			t.Errorf("Unwrap(wrapped %T) = %T, want the base connection", base, got)
		}
		if got := Unwrap(base); got != base {
			t.Errorf("Unwrap(base) = %v, want it unchanged", got)
		}
	}
	if got := Unwrap(42); got != 42 {
		t.Errorf("Unwrap(42) = %v", got)
	}
	if got := Unwrap(nil); got != nil {
		t.Errorf("Unwrap(nil) = %v", got)
	}

	// Through sql.Conn.Raw, as documented.
	base := newFakeBase(l, true, false, false)
	db := sql.OpenDB(NewConnector(&fakeConnector{newConn: func() driver.Conn { return base }}, ConnectorOptions{}))
	defer db.Close()
	sc, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var got any
	if err := sc.Raw(func(dc any) error { got = Unwrap(dc); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != base {
		t.Errorf("Unwrap inside Raw = %T, want the base connection", got)
	}
}

func TestConnClientSidePrepare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const q = "SELECT a FROM t WHERE b = $1 AND c = $2"
	args := []driver.NamedValue{{Ordinal: 1, Value: "x"}, {Ordinal: 2, Value: int64(2)}}

	t.Run("driver level", func(t *testing.T) {
		t.Parallel()
		l := new(callLog)
		wc := connect(t, newFakeBase(l, false, false, false), ConnectorOptions{ClientSidePrepare: true})
		st, err := wc.(driver.ConnPrepareContext).PrepareContext(ctx, q)
		if err != nil {
			t.Fatalf("PrepareContext: %v", err)
		}
		if l.has("Prepare") {
			t.Fatalf("client-side Prepare reached the base: %q", l.list())
		}
		if n := st.NumInput(); n != -1 {
			t.Errorf("NumInput = %d, want -1 (no describing without Driver)", n)
		}
		if _, err := st.(driver.StmtExecContext).ExecContext(ctx, args); err != nil {
			t.Errorf("ExecContext: %v", err)
		}
		rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
		if err != nil {
			t.Fatalf("QueryContext: %v", err)
		}
		rows.Close()
		// The legacy, context-less methods too.
		//lint:ignore SA1019 exercising the legacy method
		if _, err := st.Exec([]driver.Value{"x", int64(2)}); err != nil {
			t.Errorf("Exec: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		want := []string{
			"ExecContext " + q + " [x 2]",
			"QueryContext " + q + " [x 2]",
			"ExecContext " + q + " [x 2]",
		}
		if got := l.list(); !slices.Equal(got, want) {
			t.Errorf("base calls = %q, want %q", got, want)
		}
	})

	t.Run("database/sql", func(t *testing.T) {
		t.Parallel()
		l := new(callLog)
		base := newFakeBase(l, false, false, false)
		db := sql.OpenDB(NewConnector(&fakeConnector{newConn: func() driver.Conn { return base }}, ConnectorOptions{ClientSidePrepare: true}))
		defer db.Close()
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExecContext(ctx, "x", 2); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := st.QueryRowContext(ctx, "y", 3).Scan(&n); err != nil || n != 1 {
			t.Fatalf("QueryRow: %d, %v", n, err)
		}
		st.Close()
		if l.has("Prepare") || l.has("StmtClose") {
			t.Errorf("a driver statement was prepared or closed: %q", l.list())
		}
		for _, want := range []string{"ExecContext " + q + " [x 2]", "QueryContext " + q + " [y 3]"} {
			if !slices.Contains(l.list(), want) {
				t.Errorf("base did not receive %q; calls %q", want, l.list())
			}
		}
	})

	t.Run("Driver without describing support", func(t *testing.T) {
		t.Parallel()
		// driverPGX needs a *stdlib.Conn and driverPQ a statement PREPARE
		// accepts; otherwise nothing is sent at Prepare time.
		for _, tc := range []struct{ driver, query string }{{driverPGX, q}, {driverPQ, "CREATE TABLE t (a int)"}} {
			l := new(callLog)
			wc := connect(t, newFakeBase(l, false, false, false), ConnectorOptions{ClientSidePrepare: true, Driver: tc.driver})
			st, err := wc.(driver.ConnPrepareContext).PrepareContext(ctx, tc.query)
			if err != nil {
				t.Fatalf("%s: PrepareContext: %v", tc.driver, err)
			}
			if n := st.NumInput(); n != -1 {
				t.Errorf("%s: NumInput = %d, want -1", tc.driver, n)
			}
			if calls := l.list(); len(calls) != 0 {
				t.Errorf("%s: base calls at Prepare: %q", tc.driver, calls)
			}
		}
	})

	t.Run("without ClientSidePrepare", func(t *testing.T) {
		t.Parallel()
		l := new(callLog)
		wc := connect(t, newFakeBase(l, false, false, false), ConnectorOptions{})
		st, err := wc.(driver.ConnPrepareContext).PrepareContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.(driver.StmtExecContext).ExecContext(ctx, args); err != nil {
			t.Fatal(err)
		}
		want := []string{"PrepareContext " + q, "StmtExec " + q + " [x 2]"}
		if got := l.list(); !slices.Equal(got, want) {
			t.Errorf("base calls = %q, want %q", got, want)
		}
	})
}

// Base connections lacking the context interfaces the wrapper relies on.
type prepareOnlyConn struct{ closed bool }

func (c *prepareOnlyConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("unused") }
func (c *prepareOnlyConn) Close() error                        { c.closed = true; return nil }
func (c *prepareOnlyConn) Begin() (driver.Tx, error)           { return nil, errors.New("unused") }

type execOnlyConn struct{ prepareOnlyConn }

func (c *execOnlyConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(0), nil
}

func TestConnectRequiresContextInterfaces(t *testing.T) {
	t.Parallel()
	noExec := &prepareOnlyConn{}
	noQuery := &execOnlyConn{}
	for _, tc := range []struct {
		name    string
		base    driver.Conn
		closed  *bool
		missing string
	}{
		{"no ExecerContext", noExec, &noExec.closed, "driver.ExecerContext"},
		{"no QueryerContext", noQuery, &noQuery.closed, "driver.QueryerContext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewConnector(&fakeConnector{newConn: func() driver.Conn { return tc.base }}, ConnectorOptions{}).Connect(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.missing) {
				t.Fatalf("Connect error = %v, want one naming %s", err, tc.missing)
			}
			if !*tc.closed {
				t.Error("the refused base connection was not closed")
			}
		})
	}
}

// openLogged opens a database over fake connections with opts, sharing m
// between the connector and the DB handle.
func openLogged(t *testing.T, opts ConnectorOptions, setup func(*fakeConn)) (*DB, *callLog) {
	t.Helper()
	l := new(callLog)
	fc := &fakeConnector{newConn: func() driver.Conn {
		c := &fakeConn{log: l, delay: time.Microsecond}
		if setup != nil {
			setup(c)
		}
		return c
	}}
	if opts.Metrics == nil {
		opts.Metrics = new(Metrics)
	}
	sdb := sql.OpenDB(NewConnector(fc, opts))
	t.Cleanup(func() { sdb.Close() })
	return Wrap(sdb, WithMetrics(opts.Metrics)), l
}

const secretQuery = "SELECT n FROM profiles WHERE token = $1"

func TestLogSlowQueryRedactsArgs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, logArgs := range []bool{false, true} {
		t.Run(fmt.Sprintf("LogArgs=%t", logArgs), func(t *testing.T) {
			t.Parallel()
			var buf syncBuffer
			db, _ := openLogged(t, ConnectorOptions{
				Logger:    slog.New(slog.NewTextHandler(&buf, nil)),
				SlowQuery: time.Nanosecond,
				LogArgs:   logArgs,
			}, nil)
			var n int64
			if err := db.QueryRowContext(ctx, secretQuery, "s3cret-arg").Scan(&n); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "slow query") ||
				!strings.Contains(out, `sql="`+secretQuery+`"`) {
				t.Errorf("log lacks the slow query record with its SQL:\n%s", out)
			}
			if got := strings.Contains(out, "s3cret-arg"); got != logArgs {
				t.Errorf("argument value in log = %t, want %t:\n%s", got, logArgs, out)
			}
		})
	}
}

func TestLogFailedQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var buf syncBuffer
	db, _ := openLogged(t, ConnectorOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, func(c *fakeConn) {
		c.execErrs = []error{&pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key value violates unique constraint \"profiles_token_key\"", ConstraintName: "profiles_token_key"}}
	})
	const q = "INSERT INTO profiles (token) VALUES ($1)"
	_, err := db.ExecContext(ctx, q, "s3cret-arg")
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Exec error = %v, want ErrConflict", err)
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", "query failed", `sql="` + q + `"`, "error_kind=conflict", "op=exec"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret-arg") {
		t.Errorf("argument value logged without LogArgs:\n%s", out)
	}
	if strings.Contains(out, "slow query") {
		t.Errorf("slow query logged with SlowQuery unset:\n%s", out)
	}
}

// Errors that quote an argument's value — PostgreSQL's data exceptions, a
// driver's encode failure — are logged without it unless LogArgs is set.
func TestLogFailedQueryWithholdsQuotedValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"22P02", &pgconn.PgError{Severity: "ERROR", Code: "22P02", Message: `invalid input syntax for type integer: "s3cret-arg"`},
			"invalid input syntax for type integer: …"},
		{"encode", fmt.Errorf("failed to encode args[0]: unable to encode struct { Token string }{Token:\"s3cret-arg\"}"),
			"message withheld"},
	} {
		for _, logArgs := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/LogArgs=%t", tc.name, logArgs), func(t *testing.T) {
				t.Parallel()
				var buf syncBuffer
				db, _ := openLogged(t, ConnectorOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil)), LogArgs: logArgs},
					func(c *fakeConn) { c.execErrs = []error{tc.err} })
				if _, err := db.ExecContext(ctx, "UPDATE t SET n = $1", 1); err == nil {
					t.Fatal("Exec succeeded, want the error")
				}
				out := buf.String()
				if got := strings.Contains(out, "s3cret-arg"); got != logArgs {
					t.Errorf("quoted value in log = %t, want %t:\n%s", got, logArgs, out)
				}
				if !logArgs && !strings.Contains(out, tc.want) {
					t.Errorf("log lacks %q:\n%s", tc.want, out)
				}
			})
		}
	}
}

func TestMetricsCountQueriesAndErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := openLogged(t, ConnectorOptions{}, func(c *fakeConn) {
		c.execErrs = []error{
			&pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key"},
			&pgconn.PgError{Severity: "ERROR", Code: "23503", Message: "foreign key"},
		}
		c.queryErrs = []error{&pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key"}}
	})
	for range 3 {
		_, _ = db.ExecContext(ctx, "INSERT INTO t VALUES ($1)", 1)
	}
	for range 2 {
		rows, err := db.QueryContext(ctx, "SELECT 1")
		if err == nil {
			rows.Close()
		}
	}
	st := db.Stats()
	if st.Queries != 5 {
		t.Errorf("Stats().Queries = %d, want 5", st.Queries)
	}
	want := map[Kind]int64{KindConflict: 2, KindForeignKey: 1}
	if len(st.Errors) != len(want) || st.Errors[KindConflict] != 2 || st.Errors[KindForeignKey] != 1 {
		t.Errorf("Stats().Errors = %v, want %v", st.Errors, want)
	}
	if st.OpenConnections != 1 {
		t.Errorf("Stats().OpenConnections = %d, want the pool's figure 1", st.OpenConnections)
	}
}

func TestConnBadConnStillRetriedByDatabaseSQL(t *testing.T) {
	t.Parallel()
	// Classification must keep driver.ErrBadConn visible to database/sql,
	// which then retries on a fresh connection.
	l := new(callLog)
	first := true
	var mu sync.Mutex
	fc := &fakeConnector{newConn: func() driver.Conn {
		mu.Lock()
		defer mu.Unlock()
		c := &fakeConn{log: l}
		if first {
			c.execErrs = []error{driver.ErrBadConn}
			first = false
		}
		return c
	}}
	m := new(Metrics)
	sdb := sql.OpenDB(NewConnector(fc, ConnectorOptions{Metrics: m}))
	defer sdb.Close()
	if _, err := sdb.ExecContext(context.Background(), "UPDATE t SET a = 1"); err != nil {
		t.Fatalf("Exec: %v (database/sql did not retry the bad connection)", err)
	}
	if n := fc.connects(); n != 2 {
		t.Errorf("connects = %d, want 2", n)
	}
	if got := m.snapshot(sql.DBStats{}).Errors[KindConnection]; got != 1 {
		t.Errorf("connection errors counted = %d, want 1", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
