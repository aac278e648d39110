package sqladapter_test

import (
	"context"
	"database/sql/driver"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// rawConn is a connection wrapper like otelsql's, which exposes the
// connection it wraps with Raw.
type rawConn struct{ driver.Conn }

func (r rawConn) Raw() driver.Conn { return r.Conn }

func TestUnwrap(t *testing.T) {
	mockDB, _, err := sqlmock.NewWithDSN("unwrap-test")
	if err != nil {
		t.Fatal(err)
	}
	defer mockDB.Close()
	dc, err := mockDB.Driver().Open("unwrap-test")
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := sqladapter.NewConnector(txOptsConnector{c: &txOptsConn{Conn: dc}, d: mockDB.Driver()},
		sqladapter.ConnectorOptions{}).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]any{"poolsafe's": wrapped, "beneath a Raw wrapper": rawConn{rawConn{wrapped}}} {
		if got, ok := sqladapter.Unwrap(c).(*txOptsConn); !ok || got.Conn != dc {
			t.Errorf("Unwrap(%s connection) = %T, want the driver's own connection", name, sqladapter.Unwrap(c))
		}
	}
	if got := sqladapter.Unwrap(dc); got != dc {
		t.Errorf("Unwrap(a driver's connection) = %T, want it unchanged", got)
	}
}
