package signup_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	signup "github.com/scrapersky/poolsafe/examples/sqlmock"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// newMock returns a *sqladapter.DB over go-sqlmock that matches SQL by
// regular expression, and the mock to set expectations on. At the end of
// the test it checks that every expectation was met.
//
// Why not sqladapter/mocktest.New? It matches SQL exactly, which is the
// right choice for SQL you own: the repo package pins its own statements
// that way. Here the SQL belongs to the repo package (its statements are
// unexported constants), and copying their text into this test would make
// it fail whenever repo reformats a statement, though nothing about Signup
// changed. What Signup owns is the sequence — begin, insert a profile,
// upsert a domain, commit or roll back — and the arguments it passes. So
// each statement is matched by the start of its text, which names the
// operation and the table, and the arguments are pinned exactly.
func newMock(t *testing.T) (*sqladapter.DB, sqlmock.Sqlmock) {
	t.Helper()
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherRegexp))
	if err != nil {
		t.Fatal(err)
	}
	// "sqlmock" as the driver name gives sqlx $1-style bindvars, as on
	// PostgreSQL.
	db := sqladapter.Wrap(sqlDB)
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Error(err)
		}
		db.Close()
	})
	return db, mock
}

// startsWith matches a statement that begins with prefix.
func startsWith(prefix string) string { return "^" + regexp.QuoteMeta(prefix) }

var (
	tenant    = uuid.MustParse("6f1c2a7e-0000-4000-8000-000000000001")
	profileID = uuid.MustParse("0b7e4f3c-0000-4000-8000-000000000002")
	domainID  = uuid.MustParse("d0d0d0d0-0000-4000-8000-000000000003")
	at        = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

	// The columns the repositories read back (RETURNING …).
	profileColumns = []string{"id", "tenant_id", "email", "display_name", "attributes", "created_at", "updated_at"}
	domainColumns  = []string{"id", "tenant_id", "domain", "status", "scan_count", "last_scanned_at", "created_at", "updated_at"}

	request = signup.Request{
		Tenant:  tenant,
		Email:   " ann@example.com ",
		Name:    "Ann",
		Website: "https://www.Example.com/pricing",
	}
)

// expectProfileInsert expects Profiles.Create's INSERT with the cleaned-up
// arguments (email trimmed, attributes defaulted to {}).
func expectProfileInsert(mock sqlmock.Sqlmock) *sqlmock.ExpectedQuery {
	return mock.ExpectQuery(startsWith("INSERT INTO public.profiles")).
		WithArgs(tenant, "ann@example.com", "Ann", json.RawMessage(`{}`))
}

func TestSignup(t *testing.T) {
	db, mock := newMock(t)
	mock.ExpectBegin()
	expectProfileInsert(mock).WillReturnRows(sqlmock.NewRows(profileColumns).
		AddRow(profileID.String(), tenant.String(), "ann@example.com", "Ann", []byte(`{}`), at, at))
	// The website arrives normalised: no scheme, path or "www.", lower case.
	mock.ExpectQuery(startsWith("INSERT INTO public.domains")).
		WithArgs(tenant, "example.com").
		WillReturnRows(sqlmock.NewRows(domainColumns).
			AddRow(domainID.String(), tenant.String(), "example.com", "pending", 0, nil, at, at))
	mock.ExpectCommit()

	acc, err := signup.New(db).Signup(context.Background(), request)
	if err != nil {
		t.Fatalf("Signup: %v", err)
	}
	if acc.Profile.ID != profileID || acc.Profile.Email != "ann@example.com" {
		t.Errorf("profile = %+v", acc.Profile)
	}
	if acc.Domain.ID != domainID || acc.Domain.Name != "example.com" || acc.Domain.Status != repo.DomainStatusPending {
		t.Errorf("domain = %+v", acc.Domain)
	}
}

// A duplicate email fails the INSERT with SQLSTATE 23505. The service must
// report its own ErrEmailTaken, never try the domain, and roll back — the
// same whichever driver raised the error.
func TestSignupDuplicateEmail(t *testing.T) {
	for _, tc := range []struct {
		driver string
		err    error
	}{
		{"pgx", &pgconn.PgError{Code: "23505", Message: `duplicate key value violates unique constraint "profiles_tenant_email_key"`,
			ConstraintName: "profiles_tenant_email_key"}},
		{"pq", &pq.Error{Code: "23505", Message: `duplicate key value violates unique constraint "profiles_tenant_email_key"`,
			Constraint: "profiles_tenant_email_key"}},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			db, mock := newMock(t)
			mock.ExpectBegin()
			expectProfileInsert(mock).WillReturnError(tc.err)
			mock.ExpectRollback() // and no INSERT INTO public.domains

			_, err := signup.New(db).Signup(context.Background(), request)
			if !errors.Is(err, signup.ErrEmailTaken) {
				t.Fatalf("Signup error = %v, want ErrEmailTaken", err)
			}
			t.Log(err)
		})
	}
}

// Either both rows are stored or neither: a website that is not a domain
// name fails after the profile INSERT, and the transaction rolls back.
func TestSignupInvalidWebsiteRollsBack(t *testing.T) {
	db, mock := newMock(t)
	mock.ExpectBegin()
	expectProfileInsert(mock).WillReturnRows(sqlmock.NewRows(profileColumns).
		AddRow(profileID.String(), tenant.String(), "ann@example.com", "Ann", []byte(`{}`), at, at))
	mock.ExpectRollback() // the domain is rejected before any SQL is sent

	req := request
	req.Website = "http://192.0.2.1/"
	_, err := signup.New(db).Signup(context.Background(), req)
	if !errors.Is(err, sqladapter.ErrInvalidInput) {
		t.Fatalf("Signup error = %v, want ErrInvalidInput", err)
	}
	var ve *repo.ValidationError
	if !errors.As(err, &ve) || ve.Field != "name" {
		t.Errorf("Signup error = %v, want a *repo.ValidationError for field name", err)
	}
}
