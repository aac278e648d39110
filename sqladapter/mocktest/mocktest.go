// Package mocktest sets up go-sqlmock behind a *sqladapter.DB, so code
// built on poolsafe — the repositories included — can be unit-tested
// without a database.
//
//	db, mock := mocktest.New(t)
//	mock.ExpectExec("UPDATE public.jobs SET state = 'cancelled' WHERE id = $1").
//		WithArgs(id).WillReturnResult(sqlmock.NewResult(0, 1))
//	… call the code under test with db …
//
// SQL is matched exactly (sqlmock.QueryMatcherEqual), and unmet
// expectations fail the test when it ends.
package mocktest

import (
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// New returns a *sqladapter.DB over a fresh sqlmock connection and the mock
// to set expectations on. At cleanup it checks every expectation was met
// and closes the database.
func New(t testing.TB, opts ...sqladapter.Option) (*sqladapter.DB, sqlmock.Sqlmock) {
	t.Helper()
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatalf("mocktest: %v", err)
	}
	db := sqladapter.Wrap(sqlDB, "sqlmock", opts...)
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Errorf("mocktest: %v", err)
		}
		db.Close()
	})
	return db, mock
}
