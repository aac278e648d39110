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
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// New returns a *sqladapter.DB over a fresh sqlmock connection and the mock
// to set expectations on. The connection goes through
// sqladapter.NewConnector, as driverconf's do, so the code under test meets
// the same value normalisation and error classification. At cleanup New
// checks every expectation was met and closes the database.
func New(t testing.TB, opts ...sqladapter.Option) (*sqladapter.DB, sqlmock.Sqlmock) {
	t.Helper()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	dsn := "mocktest-" + hex.EncodeToString(rnd[:])
	mockDB, mock, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatalf("mocktest: %v", err)
	}
	sqlDB := sql.OpenDB(sqladapter.NewConnector(connector{dsn: dsn, d: mockDB.Driver()}, sqladapter.ConnectorOptions{}))
	sqlDB.SetMaxOpenConns(1) // sqlmock has one connection per DSN
	db := sqladapter.Wrap(sqlDB, opts...)
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Errorf("mocktest: %v", err)
		}
		db.Close()
		mockDB.Close()
	})
	return db, mock
}

// connector hands out sqlmock's connection for dsn.
type connector struct {
	dsn string
	d   driver.Driver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.d }
