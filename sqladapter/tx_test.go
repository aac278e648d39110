package sqladapter_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/sqladapter"
	"github.com/scrapersky/poolsafe/sqladapter/mocktest"
)

// waitExpectations polls ExpectationsWereMet: database/sql rolls back a
// transaction whose context ended from its own goroutine.
func waitExpectations(t *testing.T, mock sqlmock.Sqlmock) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := mock.ExpectationsWereMet()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlmock expectations: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const updateJob = "UPDATE jobs SET state = $1 WHERE id = $2"

func execUpdate(ctx context.Context, tx *sqladapter.Tx) error {
	_, err := tx.ExecContext(ctx, updateJob, "done", 7)
	return err
}

// expectation is one statement InTx sends, and what sqlmock answers.
type expectation func(sqlmock.Sqlmock)

var (
	begin    expectation = func(m sqlmock.Sqlmock) { m.ExpectBegin() }
	commit   expectation = func(m sqlmock.Sqlmock) { m.ExpectCommit() }
	rollback expectation = func(m sqlmock.Sqlmock) { m.ExpectRollback() }
	update               = updateFails(nil)
)

func updateFails(err error) expectation {
	return func(m sqlmock.Sqlmock) {
		e := m.ExpectExec(updateJob).WithArgs("done", 7)
		if err != nil {
			e.WillReturnError(err)
		} else {
			e.WillReturnResult(sqlmock.NewResult(0, 1))
		}
	}
}

func beginFails(err error) expectation {
	return func(m sqlmock.Sqlmock) { m.ExpectBegin().WillReturnError(err) }
}

func commitFails(err error) expectation {
	return func(m sqlmock.Sqlmock) { m.ExpectCommit().WillReturnError(err) }
}

// setConfig expects the per-transaction settings statement with args.
func setConfig(query string, err error, args ...driver.Value) expectation {
	return func(m sqlmock.Sqlmock) {
		e := m.ExpectExec(query).WithArgs(args...)
		if err != nil {
			e.WillReturnError(err)
		} else {
			e.WillReturnResult(sqlmock.NewResult(0, 1))
		}
	}
}

// repeat is n times the expectations in es.
func repeat(n int, es ...expectation) []expectation {
	var out []expectation
	for range n {
		out = append(out, es...)
	}
	return out
}

var (
	pgxSerialization = &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"}
	badLockTimeout   = &pgconn.PgError{Severity: "ERROR", Code: "22023", Message: `invalid value for parameter "lock_timeout": "bogus"`}
	notSupported     = &pgconn.PgError{Severity: "ERROR", Code: "0A000", Message: "not supported"}
	errMine          = errors.New("mine")
)

// inTxCase is one db.InTx call over sqlmock: what InTx must send (and what
// the database answers), what fn does, and what InTx must return.
type inTxCase struct {
	name   string
	expect []expectation
	opts   []sqladapter.TxOption
	fn     func(context.Context, *sqladapter.Tx) error // nil: execUpdate
	cancel string                                      // "before" InTx, or "in fn" before it runs; "": never

	wantErr        error  // errors.Is target; nil: success
	same           bool   // InTx returns wantErr itself, unchanged
	wantMsg        string // a part of the error's text
	calls, retries int    // fn's calls; Stats().TxRetries
	check          func(t *testing.T, err error)
}

func inTxCases() []inTxCase {
	var cases []inTxCase
	for name, err := range map[string]error{
		"pgx serialization": pgxSerialization,
		"pq serialization":  &pq.Error{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"},
		"pgx deadlock":      &pgconn.PgError{Severity: "ERROR", Code: "40P01", Message: "deadlock detected"},
		"pq deadlock":       &pq.Error{Severity: "ERROR", Code: "40P01", Message: "deadlock detected"},
		// A broken connection before COMMIT: nothing can have been applied.
		"bad conn before commit": driver.ErrBadConn,
	} {
		cases = append(cases, inTxCase{name: "retried after " + name,
			expect: []expectation{begin, updateFails(err), rollback, begin, update, commit},
			calls:  2, retries: 1})
	}
	for _, err := range []error{driver.ErrBadConn, io.ErrUnexpectedEOF} {
		cases = append(cases, inTxCase{name: fmt.Sprintf("COMMIT failing with %v not retried: it may have been applied", err),
			expect:  []expectation{begin, update, commitFails(err)},
			wantErr: sqladapter.ErrConnection, calls: 1,
			check: func(t *testing.T, got error) {
				if !errors.Is(got, err) {
					t.Errorf("InTx error = %v, want it to wrap %v", got, err)
				}
			}})
	}
	urlErr := &url.Error{Op: "Get", URL: "https://example.com/", Err: io.ErrUnexpectedEOF}
	for _, err := range []error{io.ErrUnexpectedEOF, urlErr, io.EOF, context.DeadlineExceeded, errMine} {
		cases = append(cases, inTxCase{name: fmt.Sprintf("fn's own %T %v: run once, returned unchanged", err, err),
			expect: []expectation{begin, rollback},
			fn:     func(context.Context, *sqladapter.Tx) error { return err },
			same:   true, wantErr: err, calls: 1})
	}
	noop := func(context.Context, *sqladapter.Tx) error { return nil }
	return append(cases, []inTxCase{
		{name: "gives up after WithAttempts(3)",
			expect:  repeat(3, begin, updateFails(&pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"}), rollback),
			opts:    []sqladapter.TxOption{sqladapter.WithAttempts(3)},
			wantErr: sqladapter.ErrSerialization, wantMsg: "3 attempts", calls: 3, retries: 2,
			check: func(t *testing.T, err error) {
				if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "40001" {
					t.Errorf("errors.As(*pgconn.PgError) failed on %v", err)
				}
			}},
		{name: "conflict not retried",
			expect: []expectation{begin, updateFails(&pq.Error{Severity: "ERROR", Code: "23505",
				Message: "duplicate key value violates unique constraint", Constraint: "jobs_pkey"}), rollback},
			wantErr: sqladapter.ErrConflict, calls: 1,
			check: func(t *testing.T, err error) {
				if e := (*sqladapter.Error)(nil); !errors.As(err, &e) || e.Constraint != "jobs_pkey" || e.SQLState != "23505" {
					t.Errorf("InTx error %#v: want *sqladapter.Error with constraint jobs_pkey, SQLSTATE 23505", err)
				}
			}},
		{name: "serialization failure at COMMIT retried",
			expect: []expectation{begin, commitFails(&pgconn.PgError{Severity: "ERROR", Code: "40001",
				Message: "could not serialize access due to read/write dependencies among transactions"}), begin, commit},
			fn: noop, opts: []sqladapter.TxOption{sqladapter.WithIsolation(sql.LevelSerializable)},
			calls: 2, retries: 1},
		{name: "settings first, in one statement",
			expect: []expectation{begin, setConfig("SELECT set_config($1, $2, true), set_config($3, $4, true)", nil,
				"statement_timeout", "5000ms", "app.tenant_id", "t1"), update, commit},
			opts:  []sqladapter.TxOption{sqladapter.WithSetting("statement_timeout", "5000ms"), sqladapter.WithSetting("app.tenant_id", "t1")},
			calls: 1},
		{name: "no settings, no set_config", expect: []expectation{begin, update, commit}, calls: 1},
		{name: "settings failing: rolled back, fn not run, the error says so",
			expect: []expectation{begin, setConfig("SELECT set_config($1, $2, true)", badLockTimeout, "lock_timeout", "bogus"), rollback},
			fn:     noop, opts: []sqladapter.TxOption{sqladapter.WithSetting("lock_timeout", "bogus")},
			wantErr: sqladapter.ErrInvalidInput, wantMsg: "apply transaction settings"},
		{name: "BEGIN failing: the error says so",
			expect: []expectation{beginFails(notSupported)}, fn: noop, wantErr: notSupported, wantMsg: "begin"},
		{name: "context canceled before: nothing sent", cancel: "before", fn: noop, wantErr: context.Canceled},
		{name: "context canceled while fn runs", cancel: "in fn", expect: []expectation{begin, rollback},
			wantErr: context.Canceled, calls: 1},
		{name: "retryable error after cancel: not retried", cancel: "in fn", expect: []expectation{begin, rollback},
			fn:      func(context.Context, *sqladapter.Tx) error { return pgxSerialization },
			wantErr: pgxSerialization, calls: 1},
		{name: "fn's error after a statement: rolled back, returned unchanged",
			expect: []expectation{begin, update, rollback},
			fn: func(ctx context.Context, tx *sqladapter.Tx) error {
				if err := execUpdate(ctx, tx); err != nil {
					return err
				}
				return errMine
			},
			same: true, wantErr: errMine, calls: 1},
	}...)
}

func TestInTx(t *testing.T) {
	t.Parallel()
	for _, tc := range inTxCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			db, mock := mocktest.New(t)
			for _, e := range tc.expect {
				e(mock)
			}
			fn := tc.fn
			if fn == nil {
				fn = execUpdate
			}
			if tc.cancel == "before" {
				cancel()
			}
			calls := 0
			err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
				calls++
				if tc.cancel == "in fn" {
					cancel()
				}
				return fn(ctx, tx)
			}, tc.opts...)
			// database/sql rolls back a transaction whose context ended
			// from a goroutine of its own.
			waitExpectations(t, mock)
			if tc.same && err != tc.wantErr { //nolint:errorlint // unchanged means the same value
				t.Errorf("InTx error = %#v, want fn's error unchanged (%#v)", err, tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("InTx error = %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tc.wantMsg)) {
				t.Errorf("InTx error = %v, want it to mention %q", err, tc.wantMsg)
			}
			if calls != tc.calls {
				t.Errorf("fn called %d times, want %d", calls, tc.calls)
			}
			if got := db.Stats().TxRetries; got != int64(tc.retries) {
				t.Errorf("Stats().TxRetries = %d, want %d", got, tc.retries)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

func TestInTxRollsBackOnPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectRollback()

	var recovered any
	func() {
		defer func() { recovered = recover() }()
		_ = db.InTx(ctx, func(*sqladapter.Tx) error { panic("boom") })
	}()
	if recovered != "boom" {
		t.Fatalf("recovered %v, want the panic value \"boom\" re-raised", recovered)
	}
}

// A deadline that passes between fn's statements ends the transaction
// with database/sql's own context error: InTx classifies it as it
// classifies the adapter's, so errors.Is(err, ErrTimeout) holds.
func TestInTxDeadlineBetweenStatements(t *testing.T) {
	t.Parallel()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectExec("SELECT 1").WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectRollback()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT 1"); err != nil {
			return err
		}
		<-ctx.Done()
		_, err := tx.ExecContext(ctx, "SELECT 2")
		return err
	})
	if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || sqladapter.KindOf(err) != sqladapter.KindTimeout {
		t.Errorf("InTx = %v (kind %v), want ErrTimeout, context.DeadlineExceeded and KindTimeout", err, sqladapter.KindOf(err))
	}
	// fn's own errors stay as they are.
	mine := errors.New("mine")
	mock.ExpectBegin()
	mock.ExpectRollback()
	if err := db.InTx(context.Background(), func(*sqladapter.Tx) error { return mine }); err != mine {
		t.Errorf("InTx = %#v, want fn's error itself", err)
	}
}

// txOptsConn passes a sqlmock connection through, recording the options
// of every BeginTx: sqlmock v1.5.2's ExpectBegin does not check them.
type txOptsConn struct {
	driver.Conn
	mu   sync.Mutex
	opts []driver.TxOptions
}

func (c *txOptsConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.mu.Lock()
	c.opts = append(c.opts, opts)
	c.mu.Unlock()
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *txOptsConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *txOptsConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *txOptsConn) recorded() []driver.TxOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]driver.TxOptions(nil), c.opts...)
}

type txOptsConnector struct {
	c *txOptsConn
	d driver.Driver
}

func (c txOptsConnector) Connect(context.Context) (driver.Conn, error) { return c.c, nil }
func (c txOptsConnector) Driver() driver.Driver                        { return c.d }

func TestInTxIsolationAndReadOnly(t *testing.T) {
	t.Parallel()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	dsn := "isolation-" + hex.EncodeToString(rnd[:])
	mockDB, mock, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	defer mockDB.Close()
	dc, err := mockDB.Driver().Open(dsn) // the same mock connection
	if err != nil {
		t.Fatal(err)
	}
	rec := &txOptsConn{Conn: dc}
	sdb := sql.OpenDB(txOptsConnector{c: rec, d: mockDB.Driver()})
	sdb.SetMaxOpenConns(1)
	defer sdb.Close()

	for range 3 {
		mock.ExpectBegin()
		mock.ExpectCommit()
	}
	ctx := context.Background()
	noop := func(*sqladapter.Tx) error { return nil }

	db := sqladapter.Wrap(sdb)
	if err := db.InTx(ctx, noop); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, noop, sqladapter.WithIsolation(sql.LevelSerializable), sqladapter.ReadOnly()); err != nil {
		t.Fatal(err)
	}
	// The connector's isolation level applies to every transaction begun
	// with the default level, however the handle was opened.
	rr := sqladapter.Wrap(sql.OpenDB(sqladapter.NewConnector(txOptsConnector{c: rec, d: mockDB.Driver()},
		sqladapter.ConnectorOptions{Isolation: sql.LevelRepeatableRead})))
	if err := rr.InTx(ctx, noop); err != nil {
		t.Fatal(err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Error(err)
	}
	want := []driver.TxOptions{
		{Isolation: driver.IsolationLevel(sql.LevelDefault)},
		{Isolation: driver.IsolationLevel(sql.LevelSerializable), ReadOnly: true},
		{Isolation: driver.IsolationLevel(sql.LevelRepeatableRead)},
	}
	if got := rec.recorded(); !reflect.DeepEqual(got, want) {
		t.Errorf("BeginTx options = %+v, want %+v", got, want)
	}
}

// Compile-time: every handle a repository may get is a Querier.
var (
	_ sqladapter.Querier = (*sqladapter.DB)(nil)
	_ sqladapter.Querier = (*sqladapter.Tx)(nil)
	_ sqladapter.Querier = (*sqlx.DB)(nil)
	_ sqladapter.Querier = (*sqlx.Tx)(nil)
)

const countQueued = "SELECT count(*) FROM jobs WHERE state = $1"

// queuedJobs is repository-style code written against the interface.
func queuedJobs(ctx context.Context, q sqladapter.Querier) (int, error) {
	var n int
	err := q.GetContext(ctx, &n, countQueued, "queued")
	return n, err
}

func TestQuerierHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	expectCount := func(n int) {
		mock.ExpectQuery(countQueued).WithArgs("queued").WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(n))
	}
	check := func(name string, q sqladapter.Querier, want int) {
		t.Helper()
		got, err := queuedJobs(ctx, q)
		if err != nil || got != want {
			t.Errorf("%s: queuedJobs = %d, %v; want %d, nil", name, got, err, want)
		}
	}

	expectCount(1)
	check("*sqladapter.DB", db, 1)

	mock.ExpectBegin()
	expectCount(2)
	mock.ExpectCommit()
	if err := db.InTx(ctx, func(tx *sqladapter.Tx) error { check("*sqladapter.Tx", tx, 2); return nil }); err != nil {
		t.Fatal(err)
	}

	expectCount(3)
	check("*sqlx.DB", db.DB, 3)

	mock.ExpectBegin()
	expectCount(4)
	mock.ExpectCommit()
	stx, err := db.DB.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("*sqlx.Tx", stx, 4)
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Wrap registered "sqlmock" with $N bindvars for sqlx's named queries.
	mock.ExpectExec("UPDATE jobs SET state = $1 WHERE id = $2").WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
	var q sqladapter.Querier = db
	if _, err := q.NamedExecContext(ctx, "UPDATE jobs SET state = :state WHERE id = :id", map[string]any{"state": "done", "id": 7}); err != nil {
		t.Errorf("NamedExecContext: %v", err)
	}
}
