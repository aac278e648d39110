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

func TestInTxRetriesRetryableErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"pgx serialization", &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"}},
		{"pq serialization", &pq.Error{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"}},
		{"pgx deadlock", &pgconn.PgError{Severity: "ERROR", Code: "40P01", Message: "deadlock detected"}},
		{"pq deadlock", &pq.Error{Severity: "ERROR", Code: "40P01", Message: "deadlock detected"}},
		// A broken connection before COMMIT: nothing can have been applied.
		{"bad conn before commit", driver.ErrBadConn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, mock := mocktest.New(t)
			mock.ExpectBegin()
			mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnError(tc.err)
			mock.ExpectRollback()
			mock.ExpectBegin()
			mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
			mock.ExpectCommit()

			calls := 0
			err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
				calls++
				return execUpdate(ctx, tx)
			})
			if err != nil {
				t.Fatalf("InTx: %v", err)
			}
			if calls != 2 {
				t.Errorf("fn called %d times, want 2", calls)
			}
			if got := db.Stats().TxRetries; got != 1 {
				t.Errorf("Stats().TxRetries = %d, want 1", got)
			}
		})
	}
}

func TestInTxGivesUpAfterAttemptLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		dbOpts []sqladapter.Option
		txOpts []sqladapter.TxOption
	}{
		{"WithAttempts", nil, []sqladapter.TxOption{sqladapter.WithAttempts(3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, mock := mocktest.New(t, tc.dbOpts...)
			for range 3 {
				mock.ExpectBegin()
				mock.ExpectExec(updateJob).WithArgs("done", 7).
					WillReturnError(&pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"})
				mock.ExpectRollback()
			}
			calls := 0
			err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
				calls++
				return execUpdate(ctx, tx)
			}, tc.txOpts...)
			if !errors.Is(err, sqladapter.ErrSerialization) {
				t.Fatalf("InTx error = %v, want ErrSerialization", err)
			}
			if !strings.Contains(err.Error(), "3 attempts") {
				t.Errorf("InTx error %q does not mention the 3 attempts", err)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "40001" {
				t.Errorf("errors.As(*pgconn.PgError) failed on %v", err)
			}
			if calls != 3 {
				t.Errorf("fn called %d times, want 3", calls)
			}
			if got := db.Stats().TxRetries; got != 2 {
				t.Errorf("Stats().TxRetries = %d, want 2", got)
			}
		})
	}
}

func TestInTxDoesNotRetryConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectExec(updateJob).WithArgs("done", 7).
		WillReturnError(&pq.Error{Severity: "ERROR", Code: "23505", Message: "duplicate key value violates unique constraint", Constraint: "jobs_pkey"})
	mock.ExpectRollback()

	calls := 0
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		calls++
		return execUpdate(ctx, tx)
	})
	if !errors.Is(err, sqladapter.ErrConflict) {
		t.Fatalf("InTx error = %v, want ErrConflict", err)
	}
	var e *sqladapter.Error
	if !errors.As(err, &e) || e.Constraint != "jobs_pkey" || e.SQLState != "23505" {
		t.Errorf("InTx error %#v: want *sqladapter.Error with constraint jobs_pkey, SQLSTATE 23505", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
	if got := db.Stats().TxRetries; got != 0 {
		t.Errorf("Stats().TxRetries = %d, want 0", got)
	}
}

func TestInTxCommitConnectionFailureNotRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"ErrBadConn", driver.ErrBadConn},
		{"ErrUnexpectedEOF", io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, mock := mocktest.New(t)
			mock.ExpectBegin()
			mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
			mock.ExpectCommit().WillReturnError(tc.err)

			calls := 0
			err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
				calls++
				return execUpdate(ctx, tx)
			})
			if !errors.Is(err, sqladapter.ErrConnection) {
				t.Fatalf("InTx error = %v, want ErrConnection", err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("InTx error = %v, want it to wrap %v", err, tc.err)
			}
			if calls != 1 {
				t.Errorf("fn called %d times, want 1 (COMMIT may have been applied)", calls)
			}
			if got := db.Stats().TxRetries; got != 0 {
				t.Errorf("Stats().TxRetries = %d, want 0", got)
			}
		})
	}
}

func TestInTxCommitSerializationFailureRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectCommit().WillReturnError(&pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to read/write dependencies among transactions"})
	mock.ExpectBegin()
	mock.ExpectCommit()

	calls := 0
	err := db.InTx(ctx, func(*sqladapter.Tx) error {
		calls++
		return nil
	}, sqladapter.WithIsolation(sql.LevelSerializable))
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if calls != 2 {
		t.Errorf("fn called %d times, want 2", calls)
	}
	if got := db.Stats().TxRetries; got != 1 {
		t.Errorf("Stats().TxRetries = %d, want 1", got)
	}
}

func TestInTxAppliesSettingsFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)

	// Per-call settings: one statement right after BEGIN.
	mock.ExpectBegin()
	mock.ExpectExec("SELECT set_config($1, $2, true), set_config($3, $4, true)").
		WithArgs("statement_timeout", "5000ms", "app.tenant_id", "t1").
		WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()

	fn := func(tx *sqladapter.Tx) error { return execUpdate(ctx, tx) }
	if err := db.InTx(ctx, fn, sqladapter.WithSetting("statement_timeout", "5000ms"), sqladapter.WithSetting("app.tenant_id", "t1")); err != nil {
		t.Fatalf("InTx with settings: %v", err)
	}
}

func TestInTxNoSettingsNoSetConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	if err := db.InTx(ctx, func(tx *sqladapter.Tx) error { return execUpdate(ctx, tx) }); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func TestInTxSettingsFailureRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectExec("SELECT set_config($1, $2, true)").WithArgs("lock_timeout", "bogus").
		WillReturnError(&pgconn.PgError{Severity: "ERROR", Code: "22023", Message: `invalid value for parameter "lock_timeout": "bogus"`})
	mock.ExpectRollback()
	called := false
	err := db.InTx(ctx, func(*sqladapter.Tx) error { called = true; return nil },
		sqladapter.WithSetting("lock_timeout", "bogus"))
	if !errors.Is(err, sqladapter.ErrInvalidInput) {
		t.Fatalf("InTx error = %v, want ErrInvalidInput", err)
	}
	if called {
		t.Error("fn ran although the settings failed")
	}
}

// runTx wraps a failed set_config as "apply transaction settings: …" and a
// failed BEGIN as "begin: …"; that context should survive classification.
func TestInTxErrorKeepsContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("settings", func(t *testing.T) {
		t.Parallel()
		db, mock := mocktest.New(t)
		mock.ExpectBegin()
		mock.ExpectExec("SELECT set_config($1, $2, true)").WithArgs("lock_timeout", "bogus").
			WillReturnError(&pgconn.PgError{Severity: "ERROR", Code: "22023", Message: `invalid value for parameter "lock_timeout": "bogus"`})
		mock.ExpectRollback()
		err := db.InTx(ctx, func(*sqladapter.Tx) error { return nil }, sqladapter.WithSetting("lock_timeout", "bogus"))
		if err == nil || !strings.Contains(err.Error(), "apply transaction settings") {
			t.Errorf("InTx error = %v, want it to say the transaction settings failed", err)
		}
	})
	t.Run("begin", func(t *testing.T) {
		t.Parallel()
		db, mock := mocktest.New(t)
		mock.ExpectBegin().WillReturnError(&pgconn.PgError{Severity: "ERROR", Code: "0A000", Message: "not supported"})
		err := db.InTx(ctx, func(*sqladapter.Tx) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "begin") {
			t.Errorf("InTx error = %v, want it to say BEGIN failed", err)
		}
	})
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

func TestInTxRollsBackOnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, mock := mocktest.New(t)
	mock.ExpectBegin()
	mock.ExpectExec(updateJob).WithArgs("done", 7).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectRollback()

	errMine := errors.New("mine")
	calls := 0
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		calls++
		if err := execUpdate(ctx, tx); err != nil {
			return err
		}
		return errMine
	})
	if err != errMine { //nolint:errorlint // unchanged means the same value
		t.Errorf("InTx error = %#v, want the fn's error unchanged", err)
	}
	if !errors.Is(err, errMine) {
		t.Errorf("errors.Is(%v, errMine) = false", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
}

func TestInTxContextCanceled(t *testing.T) {
	t.Parallel()
	t.Run("before", func(t *testing.T) {
		t.Parallel()
		db, _ := mocktest.New(t) // no expectation: nothing reaches the driver
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		called := false
		err := db.InTx(ctx, func(*sqladapter.Tx) error { called = true; return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("InTx error = %v, want context.Canceled", err)
		}
		if called {
			t.Error("fn ran with a canceled context")
		}
	})
	t.Run("while running", func(t *testing.T) {
		t.Parallel()
		db, mock := mocktest.New(t)
		mock.ExpectBegin()
		mock.ExpectRollback()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
			calls++
			cancel()
			_, err := tx.ExecContext(ctx, updateJob, "done", 7)
			return err
		})
		waitExpectations(t, mock)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("InTx error = %v, want context.Canceled", err)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
	})
	t.Run("retryable error after cancel", func(t *testing.T) {
		t.Parallel()
		db, mock := mocktest.New(t)
		mock.ExpectBegin()
		mock.ExpectRollback()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		_ = db.InTx(ctx, func(*sqladapter.Tx) error {
			calls++
			cancel()
			return &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"}
		})
		waitExpectations(t, mock)
		if calls != 1 {
			t.Errorf("fn called %d times, want 1 (no retry once ctx is done)", calls)
		}
		if got := db.Stats().TxRetries; got != 0 {
			t.Errorf("Stats().TxRetries = %d, want 0", got)
		}
	})
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

func TestSetConfigSQL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		settings []sqladapter.Setting
		wantSQL  string
		wantArgs []any
	}{
		{"none", nil, "SELECT ", []any{}},
		{"one", []sqladapter.Setting{{Name: "statement_timeout", Value: "5s"}},
			"SELECT set_config($1, $2, true)", []any{"statement_timeout", "5s"}},
		{"three", []sqladapter.Setting{
			{Name: "statement_timeout", Value: "5s"},
			{Name: "search_path", Value: "app, public"},
			{Name: "app.tenant_id", Value: "t1"},
		}, "SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true)",
			[]any{"statement_timeout", "5s", "search_path", "app, public", "app.tenant_id", "t1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sql, args := sqladapter.SetConfigSQL(tc.settings)
			if sql != tc.wantSQL {
				t.Errorf("SQL = %q, want %q", sql, tc.wantSQL)
			}
			if !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("args = %#v, want %#v", args, tc.wantArgs)
			}
		})
	}
}

func TestInTxCallerErrorsRunOnceUnchanged(t *testing.T) {
	t.Parallel()
	urlErr := &url.Error{Op: "Get", URL: "https://example.com/", Err: io.ErrUnexpectedEOF}
	for _, want := range []error{io.ErrUnexpectedEOF, urlErr, io.EOF, context.DeadlineExceeded, errors.New("mine")} {
		t.Run(fmt.Sprintf("%T %v", want, want), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, mock := mocktest.New(t)
			mock.ExpectBegin()
			mock.ExpectRollback()
			calls := 0
			err := db.InTx(ctx, func(*sqladapter.Tx) error {
				calls++
				return want
			})
			if calls != 1 {
				t.Errorf("fn ran %d times, want 1: an error of fn's own is never retried", calls)
			}
			if err != want {
				t.Errorf("InTx error = %#v, want fn's error unchanged (%#v)", err, want)
			}
		})
	}
}
