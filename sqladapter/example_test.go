package sqladapter_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// InTx runs a function in a transaction, applies per-transaction settings
// in one round trip, and runs it again after a serialization failure.
// (sqlmock stands in for the database here.)
func ExampleDB_InTx() {
	mockDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		log.Fatal(err)
	}
	db := sqladapter.Wrap(mockDB)
	defer db.Close()

	for _, fail := range []bool{true, false} {
		mock.ExpectBegin()
		mock.ExpectExec("SELECT set_config($1, $2, true)").WithArgs("app.tenant_id", "t-42").
			WillReturnResult(sqlmock.NewResult(0, 0))
		exec := mock.ExpectExec("UPDATE jobs SET state = 'running' WHERE id = $1").WithArgs(7)
		if fail {
			exec.WillReturnError(&pgconn.PgError{Code: "40001", Message: "could not serialize access"})
			mock.ExpectRollback()
		} else {
			exec.WillReturnResult(sqlmock.NewResult(0, 1))
			mock.ExpectCommit()
		}
	}

	ctx := context.Background()
	attempts := 0
	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
		attempts++
		_, err := tx.ExecContext(ctx, "UPDATE jobs SET state = 'running' WHERE id = $1", 7)
		return err
	}, sqladapter.WithSetting("app.tenant_id", "t-42"))
	fmt.Println("error:", err, "attempts:", attempts, "retries:", db.Stats().TxRetries)
	fmt.Println("expectations met:", mock.ExpectationsWereMet() == nil)
	// Output:
	// error: <nil> attempts: 2 retries: 1
	// expectations met: true
}

// Classify gives errors from either driver one set of sentinels.
func ExampleClassify() {
	fromPgx := fmt.Errorf("create profile: %w", &pgconn.PgError{
		Code: "23505", Message: `duplicate key value violates unique constraint "profiles_email_key"`,
		ConstraintName: "profiles_email_key", TableName: "profiles",
	})
	fromPQ := fmt.Errorf("create profile: %w", &pq.Error{
		Code: "23505", Message: `duplicate key value violates unique constraint "profiles_email_key"`,
		Constraint: "profiles_email_key", Table: "profiles",
	})
	for _, err := range []error{fromPgx, fromPQ} {
		err = sqladapter.Classify(err)
		var e *sqladapter.Error
		errors.As(err, &e)
		fmt.Println(errors.Is(err, sqladapter.ErrConflict), e.Kind, e.SQLState, e.Constraint, e.Table)
	}
	// Output:
	// true conflict 23505 profiles_email_key profiles
	// true conflict 23505 profiles_email_key profiles
}
