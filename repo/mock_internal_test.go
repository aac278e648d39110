package repo

import (
	"context"
	"database/sql/driver"
	"errors"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/sqladapter"
	"github.com/scrapersky/poolsafe/sqladapter/mocktest"
)

// mockRepos returns the repositories over sqlmock, through poolsafe's
// connector as driverconf's handles are (mocktest.New): any statement not
// expected fails the test, and so does an expectation left unmet.
func mockRepos(t *testing.T, opts ...Option) (*Repos, sqlmock.Sqlmock) {
	t.Helper()
	db, mock := mocktest.New(t)
	return New(db, opts...), mock
}

// nullable returns what a driver sends for a pointer column.
func nullable[T any](p *T) driver.Value {
	if p == nil {
		return nil
	}
	switch v := any(*p).(type) {
	case uuid.UUID:
		return v.String()
	default:
		return v
	}
}

// expectInvalid checks err is a *ValidationError for field matching
// sqladapter.ErrInvalidInput (and so that no statement was sent: the mock
// fails any).
func expectInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != field || !errors.Is(err, sqladapter.ErrInvalidInput) {
		t.Fatalf("err = %v, want a validation error for %q", err, field)
	}
	wantClass(t, err, sqladapter.ErrInvalidInput, sqladapter.KindInvalidInput)
}

// expectMissing checks that call reports ErrNotFound for a row the mock
// says is not there (expected by the caller), and a validation error for
// the nil tenant without sending anything.
func expectMissing[T any](t *testing.T, call func(context.Context, uuid.UUID, uuid.UUID) (T, error), tenant, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	if _, err := call(ctx, tenant, id); !errors.Is(err, sqladapter.ErrNotFound) {
		t.Fatalf("missing row: %v, want ErrNotFound", err)
	}
	_, err := call(ctx, uuid.Nil, id)
	expectInvalid(t, err, "tenant")
}
