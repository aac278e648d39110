package sqladapter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/scrapersky/poolsafe/sqladapter"
	"github.com/scrapersky/poolsafe/sqladapter/mocktest"
)

// The acquire timeout bounds the wait for a connection, and nothing after.
func TestAcquireTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	db, mock := mocktest.New(t, sqladapter.WithAcquireTimeout(timeout))
	ctx := context.Background()

	// The pool's one connection is held: the wait ends at the timeout.
	mock.ExpectBegin()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var one int
	err = db.GetContext(ctx, &one, "SELECT 1")
	if waited := time.Since(start); waited < timeout || waited > 20*timeout {
		t.Errorf("gave up after %s, want about %s", waited, timeout)
	}
	if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) ||
		sqladapter.KindOf(err) != sqladapter.KindTimeout {
		t.Errorf("pool exhausted: %v (kind %v), want ErrTimeout, context.DeadlineExceeded and KindTimeout", err, sqladapter.KindOf(err))
	}
	// The caller's own cancellation still ends the wait, as itself.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(timeout/4, cancel)
	if _, err := db.ExecContext(cctx, "SELECT 1"); !errors.Is(err, context.Canceled) || errors.Is(err, sqladapter.ErrTimeout) {
		t.Errorf("cancelled while waiting: %v, want context.Canceled, not ErrTimeout", err)
	}
	mock.ExpectRollback()
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// With a free connection, a statement and its rows outlive the timeout.
	mock.ExpectExec("UPDATE t SET v = 1").WillDelayFor(3 * timeout).WillReturnResult(sqlmock.NewResult(0, 1))
	if _, err := db.ExecContext(ctx, "UPDATE t SET v = 1"); err != nil {
		t.Errorf("slow statement on a free connection: %v", err)
	}
	mock.ExpectQuery("SELECT v FROM t").WillReturnRows(sqlmock.NewRows([]string{"v"}).AddRow(1).AddRow(2))
	rows, err := db.QueryContext(ctx, "SELECT v FROM t")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * timeout)
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil || n != 2 {
		t.Errorf("rows read after the timeout: %d rows, %v; want 2, nil", n, err)
	}
	rows.Close()
	mock.ExpectBegin()
	mock.ExpectCommit()
	err = db.InTx(ctx, func(*sqladapter.Tx) error { time.Sleep(2 * timeout); return nil })
	if err != nil {
		t.Errorf("transaction longer than the timeout: %v", err)
	}
}
