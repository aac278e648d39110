package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapersky/poolsafe/sqladapter"
)

var profileCols = []string{"id", "tenant_id", "email", "display_name", "attributes", "created_at", "updated_at"}

// profileRows returns rows holding p as the database sends them.
func profileRows(ps ...Profile) *sqlmock.Rows {
	rows := sqlmock.NewRows(profileCols)
	for _, p := range ps {
		rows.AddRow(p.ID.String(), p.TenantID.String(), p.Email, p.DisplayName, []byte(p.Attributes), p.CreatedAt, p.UpdatedAt)
	}
	return rows
}

func sampleProfile(tenant uuid.UUID) Profile {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	return Profile{
		ID: uuid.New(), TenantID: tenant, Email: "Ann@Example.com", DisplayName: "Ann",
		Attributes: json.RawMessage(`{"plan": "pro"}`), CreatedAt: at, UpdatedAt: at,
	}
}

func TestProfilesCreateSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleProfile(tenant)
	mock.ExpectQuery(render(DefaultSchema, sqlProfileInsert)).
		WithArgs(tenant, "Ann@Example.com", "Ann", `{"plan": "pro"}`).
		WillReturnRows(profileRows(want))
	got, err := r.Profiles.Create(context.Background(), tenant, NewProfile{
		Email: "  Ann@Example.com ", DisplayName: " Ann ", Attributes: json.RawMessage(` {"plan": "pro"} `),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.TenantID != tenant || got.Email != want.Email || string(got.Attributes) != string(want.Attributes) ||
		!got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestProfilesCreateDefaultsAttributes(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleProfile(tenant)
	want.Attributes = json.RawMessage(`{}`)
	mock.ExpectQuery(render(DefaultSchema, sqlProfileInsert)).
		WithArgs(tenant, "bob@example.org", "", `{}`).
		WillReturnRows(profileRows(want))
	if _, err := r.Profiles.Create(context.Background(), tenant, NewProfile{Email: "bob@example.org"}); err != nil {
		t.Fatal(err)
	}
}

func TestProfilesCreateRendersSchema(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t, WithSchema("Tenant Data"))
	tenant := uuid.New()
	stmt := render("Tenant Data", sqlProfileInsert)
	if !strings.Contains(stmt, `INSERT INTO "Tenant Data".profiles`) {
		t.Fatalf("rendered statement does not name the quoted schema:\n%s", stmt)
	}
	mock.ExpectQuery(stmt).WithArgs(tenant, "a@example.com", "", `{}`).
		WillReturnRows(profileRows(sampleProfile(tenant)))
	if _, err := r.Profiles.Create(context.Background(), tenant, NewProfile{Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
}

func TestProfilesCreateConflict(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlProfileInsert)).
		WithArgs(tenant, "ann@example.com", "", `{}`).
		WillReturnError(&pgconn.PgError{Code: "23505", ConstraintName: "profiles_tenant_email_key", Message: "duplicate key"})
	_, err := r.Profiles.Create(context.Background(), tenant, NewProfile{Email: "ann@example.com"})
	if !errors.Is(err, sqladapter.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	var e *sqladapter.Error
	if !errors.As(err, &e) || e.Constraint != "profiles_tenant_email_key" {
		t.Fatalf("err = %v, want the constraint named", err)
	}
	if !strings.HasPrefix(err.Error(), "create profile: ") {
		t.Fatalf("err = %q, want it to say what failed", err)
	}
}

func TestProfilesCreateInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 250) + "@example.com"
	cases := []struct {
		name   string
		tenant uuid.UUID
		in     NewProfile
		field  string
	}{
		{"nil tenant", uuid.Nil, NewProfile{Email: "a@example.com"}, "tenant"},
		{"no email", uuid.New(), NewProfile{}, "email"},
		{"blank email", uuid.New(), NewProfile{Email: "   "}, "email"},
		{"not an address", uuid.New(), NewProfile{Email: "ann"}, "email"},
		{"two at signs", uuid.New(), NewProfile{Email: "a@b@example.com"}, "email"},
		{"display name form", uuid.New(), NewProfile{Email: "Ann <ann@example.com>"}, "email"},
		{"angle brackets", uuid.New(), NewProfile{Email: "<ann@example.com>"}, "email"},
		{"no dot in domain", uuid.New(), NewProfile{Email: "ann@localhost"}, "email"},
		{"address literal", uuid.New(), NewProfile{Email: "ann@[127.0.0.1]"}, "email"},
		{"too long", uuid.New(), NewProfile{Email: long}, "email"},
		{"long local part", uuid.New(), NewProfile{Email: strings.Repeat("a", 65) + "@example.com"}, "email"},
		{"invalid utf-8", uuid.New(), NewProfile{Email: "a\xff@example.com"}, "email"},
		{"long display name", uuid.New(), NewProfile{Email: "a@example.com", DisplayName: strings.Repeat("é", 201)}, "display_name"},
		{"NUL in display name", uuid.New(), NewProfile{Email: "a@example.com", DisplayName: "a\x00b"}, "display_name"},
		{"attributes not JSON", uuid.New(), NewProfile{Email: "a@example.com", Attributes: json.RawMessage(`{`)}, "attributes"},
		{"attributes array", uuid.New(), NewProfile{Email: "a@example.com", Attributes: json.RawMessage(`[1]`)}, "attributes"},
		{"attributes null", uuid.New(), NewProfile{Email: "a@example.com", Attributes: json.RawMessage(`null`)}, "attributes"},
		{"attributes string", uuid.New(), NewProfile{Email: "a@example.com", Attributes: json.RawMessage(`"x"`)}, "attributes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t) // no statement expected
			_, err := r.Profiles.Create(context.Background(), c.tenant, c.in)
			expectInvalid(t, err, c.field)
		})
	}
}

func TestProfilesCreateAcceptsLimits(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	name := strings.Repeat("é", 200)
	email := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + ".example.com"
	mock.ExpectQuery(render(DefaultSchema, sqlProfileInsert)).
		WithArgs(tenant, email, name, `{}`).
		WillReturnRows(profileRows(sampleProfile(tenant)))
	if _, err := r.Profiles.Create(context.Background(), tenant, NewProfile{Email: email, DisplayName: name}); err != nil {
		t.Fatal(err)
	}
}

func TestProfilesGetSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleProfile(tenant)
	mock.ExpectQuery(render(DefaultSchema, sqlProfileGet)).WithArgs(tenant, want.ID).WillReturnRows(profileRows(want))
	got, err := r.Profiles.Get(context.Background(), tenant, want.ID)
	if err != nil || got.ID != want.ID || got.Email != want.Email {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}
}

func TestProfilesGetNotFound(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant, id := uuid.New(), uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlProfileGet)).WithArgs(tenant, id).WillReturnRows(profileRows())
	if _, err := r.Profiles.Get(context.Background(), tenant, id); !errors.Is(err, sqladapter.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestProfilesGetInvalidTenant(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t)
	_, err := r.Profiles.Get(context.Background(), uuid.Nil, uuid.New())
	expectInvalid(t, err, "tenant")
}

func TestProfilesUpdateSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	email, name, attrs := " New@Example.com ", "", json.RawMessage(` `)
	cases := []struct {
		name string
		up   ProfileUpdate
		args []driver.Value // email, display name, attributes
	}{
		{"email", ProfileUpdate{Email: &email}, []driver.Value{"New@Example.com", nil, nil}},
		{"display name", ProfileUpdate{DisplayName: &name}, []driver.Value{nil, "", nil}},
		{"attributes reset", ProfileUpdate{Attributes: &attrs}, []driver.Value{nil, nil, `{}`}},
		{"all", ProfileUpdate{Email: &email, DisplayName: &name, Attributes: &attrs}, []driver.Value{"New@Example.com", "", `{}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, mock := mockRepos(t)
			want := sampleProfile(tenant)
			mock.ExpectQuery(render(DefaultSchema, sqlProfileUpdate)).
				WithArgs(append([]driver.Value{tenant, want.ID}, c.args...)...).
				WillReturnRows(profileRows(want))
			got, err := r.Profiles.Update(context.Background(), tenant, want.ID, c.up)
			if err != nil || got.ID != want.ID {
				t.Fatalf("Update = %+v, %v", got, err)
			}
		})
	}
}

func TestProfilesUpdateErrors(t *testing.T) {
	t.Parallel()
	tenant, id := uuid.New(), uuid.New()
	email := "taken@example.com"
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlProfileUpdate)).
			WithArgs(tenant, id, email, nil, nil).WillReturnError(sql.ErrNoRows)
		if _, err := r.Profiles.Update(context.Background(), tenant, id, ProfileUpdate{Email: &email}); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlProfileUpdate)).
			WithArgs(tenant, id, email, nil, nil).
			WillReturnError(&pgconn.PgError{Code: "23505", ConstraintName: "profiles_tenant_email_key"})
		if _, err := r.Profiles.Update(context.Background(), tenant, id, ProfileUpdate{Email: &email}); !errors.Is(err, sqladapter.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
	})
	bad, long, arr := "nope", strings.Repeat("n", 201), json.RawMessage(`[]`)
	invalidCases := []struct {
		name   string
		tenant uuid.UUID
		up     ProfileUpdate
		field  string
	}{
		{"empty update", tenant, ProfileUpdate{}, "update"},
		{"nil tenant", uuid.Nil, ProfileUpdate{Email: &email}, "tenant"},
		{"bad email", tenant, ProfileUpdate{Email: &bad}, "email"},
		{"long display name", tenant, ProfileUpdate{Email: &email, DisplayName: &long}, "display_name"},
		{"attributes array", tenant, ProfileUpdate{Attributes: &arr}, "attributes"},
	}
	for _, c := range invalidCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t)
			_, err := r.Profiles.Update(context.Background(), c.tenant, id, c.up)
			expectInvalid(t, err, c.field)
		})
	}
}

func TestProfilesDeleteSQL(t *testing.T) {
	t.Parallel()
	tenant, id := uuid.New(), uuid.New()
	t.Run("deleted", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectExec(render(DefaultSchema, sqlProfileDelete)).WithArgs(tenant, id).WillReturnResult(sqlmock.NewResult(0, 1))
		if err := r.Profiles.Delete(context.Background(), tenant, id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectExec(render(DefaultSchema, sqlProfileDelete)).WithArgs(tenant, id).WillReturnResult(sqlmock.NewResult(0, 0))
		if err := r.Profiles.Delete(context.Background(), tenant, id); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("nil tenant", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		expectInvalid(t, r.Profiles.Delete(context.Background(), uuid.Nil, id), "tenant")
	})
	t.Run("connection error", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectExec(render(DefaultSchema, sqlProfileDelete)).WithArgs(tenant, id).
			WillReturnError(&pgconn.PgError{Code: "57P01", Severity: "FATAL", Message: "terminating connection"})
		if err := r.Profiles.Delete(context.Background(), tenant, id); !errors.Is(err, sqladapter.ErrConnection) {
			t.Fatalf("err = %v, want ErrConnection", err)
		}
	})
}

var firstPage = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

func TestProfilesListSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	a, b := sampleProfile(tenant), sampleProfile(tenant)
	b.CreatedAt = b.CreatedAt.Add(time.Second)

	t.Run("first page full", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlProfileList)).
			WithArgs(tenant, firstPage, uuid.Nil, 3, 0).WillReturnRows(profileRows(a, b, sampleProfile(tenant)))
		page, err := r.Profiles.List(context.Background(), tenant, Page{Limit: 2})
		if err != nil || len(page.Items) != 2 {
			t.Fatalf("List = %+v, %v", page, err)
		}
		want := cursor{createdAt: b.CreatedAt, id: b.ID}.encode()
		if page.NextCursor != want {
			t.Fatalf("NextCursor = %q, want %q", page.NextCursor, want)
		}
		c, err := decodeCursor(page.NextCursor)
		if err != nil || !c.createdAt.Equal(b.CreatedAt) || c.id != b.ID {
			t.Fatalf("cursor = %+v, %v", c, err)
		}
	})
	t.Run("cursor, last page", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlProfileList)).
			WithArgs(tenant, a.CreatedAt, a.ID, 3, 0).WillReturnRows(profileRows(b))
		page, err := r.Profiles.List(context.Background(), tenant, Page{Limit: 2, Cursor: cursor{createdAt: a.CreatedAt, id: a.ID}.encode()})
		if err != nil || len(page.Items) != 1 || page.NextCursor != "" {
			t.Fatalf("List = %+v, %v", page, err)
		}
	})
	t.Run("offset, default limit, empty", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlProfileList)).
			WithArgs(tenant, firstPage, uuid.Nil, DefaultLimit+1, 100).WillReturnRows(profileRows())
		page, err := r.Profiles.List(context.Background(), tenant, Page{Offset: 100})
		if err != nil || page.Items == nil || len(page.Items) != 0 || page.NextCursor != "" {
			t.Fatalf("List = %+v, %v; want an empty, non-nil page", page, err)
		}
	})
	invalidCases := []struct {
		name   string
		tenant uuid.UUID
		page   Page
		field  string
	}{
		{"nil tenant", uuid.Nil, Page{}, "tenant"},
		{"negative limit", tenant, Page{Limit: -1}, "limit"},
		{"limit too big", tenant, Page{Limit: MaxLimit + 1}, "limit"},
		{"negative offset", tenant, Page{Offset: -1}, "offset"},
		{"cursor and offset", tenant, Page{Cursor: cursor{createdAt: a.CreatedAt, id: a.ID}.encode(), Offset: 1}, "offset"},
		{"bad cursor", tenant, Page{Cursor: "!!"}, "cursor"},
	}
	for _, c := range invalidCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t)
			_, err := r.Profiles.List(context.Background(), c.tenant, c.page)
			expectInvalid(t, err, c.field)
		})
	}
	t.Run("malformed cursor", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		if _, err := r.Profiles.List(context.Background(), tenant, Page{Cursor: "bm9wZQ"}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("err = %v, want ErrInvalidInput", err)
		}
	})
}

// TestProfileStatementsFilterByTenant pins the rule every statement of
// this file follows.
func TestProfileStatementsFilterByTenant(t *testing.T) {
	t.Parallel()
	for _, stmt := range []string{sqlProfileGet, sqlProfileUpdate, sqlProfileDelete, sqlProfileList} {
		if !strings.Contains(stmt, "WHERE tenant_id = $1") {
			t.Errorf("statement does not filter by tenant:\n%s", stmt)
		}
	}
	if !strings.Contains(sqlProfileInsert, "(tenant_id,") {
		t.Errorf("insert does not set the tenant:\n%s", sqlProfileInsert)
	}
}
