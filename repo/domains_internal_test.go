package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapersky/poolsafe/sqladapter"
)

var domainCols = []string{"id", "tenant_id", "domain", "status", "scan_count", "last_scanned_at", "created_at", "updated_at"}

// domainRows returns rows holding ds as the database sends them.
func domainRows(ds ...Domain) *sqlmock.Rows {
	rows := sqlmock.NewRows(domainCols)
	for _, d := range ds {
		var last any
		if d.LastScannedAt != nil {
			last = *d.LastScannedAt
		}
		rows.AddRow(d.ID.String(), d.TenantID.String(), d.Name, string(d.Status), int64(d.ScanCount), last, d.CreatedAt, d.UpdatedAt)
	}
	return rows
}

func sampleDomain(tenant uuid.UUID, name string) Domain {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return Domain{ID: uuid.New(), TenantID: tenant, Name: name, Status: DomainStatusPending, CreatedAt: at, UpdatedAt: at}
}

func TestDomainStatusValid(t *testing.T) {
	t.Parallel()
	for _, s := range []DomainStatus{DomainStatusPending, DomainStatusActive, DomainStatusBlocked, DomainStatusError} {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
	}
	for _, s := range []DomainStatus{"", "Active", "done", "pending "} {
		if s.Valid() {
			t.Errorf("%q valid", s)
		}
	}
}

func TestDomainsUpsertSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleDomain(tenant, "xn--bcher-kva.de")
	mock.ExpectQuery(render(DefaultSchema, sqlDomainUpsert)).WithArgs(tenant, "xn--bcher-kva.de").WillReturnRows(domainRows(want))
	got, err := r.Domains.Upsert(context.Background(), tenant, "https://www.Bücher.de/katalog")
	if err != nil || got.ID != want.ID || got.Name != want.Name || got.Status != DomainStatusPending || got.LastScannedAt != nil {
		t.Fatalf("Upsert = %+v, %v; want %+v", got, err, want)
	}
}

func TestDomainsUpsertErrors(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	t.Run("invalid name", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.Upsert(context.Background(), tenant, "not a domain")
		expectInvalid(t, err, "name")
	})
	t.Run("nil tenant", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.Upsert(context.Background(), uuid.Nil, "example.com")
		expectInvalid(t, err, "tenant")
	})
	t.Run("check violation", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainUpsert)).WithArgs(tenant, "example.com").
			WillReturnError(&pgconn.PgError{Code: "23514", ConstraintName: "domains_domain_check"})
		if _, err := r.Domains.Upsert(context.Background(), tenant, "example.com"); !errors.Is(err, sqladapter.ErrCheck) {
			t.Fatalf("err = %v, want ErrCheck", err)
		}
	})
}

func TestDomainsBulkUpsertSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	names := []string{"https://Zeta.example", "alpha.example", "www.zeta.example", "ALPHA.example.", "beta.example"}
	ids := map[string]uuid.UUID{"alpha.example": uuid.New(), "beta.example": uuid.New(), "zeta.example": uuid.New()}
	// Distinct, sorted, as one text[] literal.
	mock.ExpectQuery(render(DefaultSchema, sqlDomainBulkUpsert)).
		WithArgs(tenant, `{"alpha.example","beta.example","zeta.example"}`).
		WillReturnRows(sqlmock.NewRows([]string{"id", "domain", "inserted"}).
			AddRow(ids["alpha.example"].String(), "alpha.example", false).
			AddRow(ids["beta.example"].String(), "beta.example", true).
			AddRow(ids["zeta.example"].String(), "zeta.example", true))
	res, err := r.Domains.BulkUpsert(context.Background(), tenant, names)
	if err != nil {
		t.Fatal(err)
	}
	want := []UpsertedDomain{
		{ID: ids["zeta.example"], Name: "zeta.example", Inserted: true},
		{ID: ids["alpha.example"], Name: "alpha.example", Inserted: false},
		{ID: ids["beta.example"], Name: "beta.example", Inserted: true},
	}
	if fmt.Sprint(res.Domains) != fmt.Sprint(want) {
		t.Fatalf("Domains = %v, want %v (first-appearance order)", res.Domains, want)
	}
	if fmt.Sprint(res.Index) != "[0 1 0 1 2]" || res.Inserted != 2 {
		t.Fatalf("Index = %v, Inserted = %d; want [0 1 0 1 2], 2", res.Index, res.Inserted)
	}
	for i, n := range names {
		norm, _ := NormalizeDomain(n)
		if res.ID(i) != ids[norm] {
			t.Errorf("ID(%d) = %v, want %v (%s)", i, res.ID(i), ids[norm], norm)
		}
	}
	if got := res.IDs(); fmt.Sprint(got) != fmt.Sprint([]uuid.UUID{ids["zeta.example"], ids["alpha.example"], ids["beta.example"]}) {
		t.Fatalf("IDs = %v", got)
	}
}

func TestDomainsBulkUpsertEmpty(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t) // no statement
	for _, names := range [][]string{nil, {}} {
		res, err := r.Domains.BulkUpsert(context.Background(), uuid.New(), names)
		if err != nil || len(res.Domains) != 0 || len(res.Index) != 0 || res.Inserted != 0 || len(res.IDs()) != 0 {
			t.Fatalf("BulkUpsert(%v) = %+v, %v; want an empty result", names, res, err)
		}
	}
}

func TestDomainsBulkUpsertInvalid(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	tooMany := make([]string, MaxBatchDomains+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("d%d.example", i)
	}
	cases := []struct {
		name   string
		tenant uuid.UUID
		names  []string
		field  string
		reason string
	}{
		{"nil tenant", uuid.Nil, []string{"example.com"}, "tenant", "required"},
		{"too many", tenant, tooMany, "names", "more than the 10000"},
		{"bad name", tenant, []string{"ok.example", "also.ok.example", "exa_mple.com"}, "names[2]", "not a valid domain"},
		{"empty name", tenant, []string{"", "ok.example"}, "names[0]", "empty"},
		{"ip address", tenant, []string{"ok.example", "10.0.0.1"}, "names[1]", "IP address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t) // no statement expected
			_, err := r.Domains.BulkUpsert(context.Background(), c.tenant, c.names)
			expectInvalid(t, err, c.field)
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("err = %v, want it to say %q", err, c.reason)
			}
		})
	}
}

func TestDomainsBulkUpsertAcceptsMax(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	names := make([]string, MaxBatchDomains)
	rows := sqlmock.NewRows([]string{"id", "domain", "inserted"})
	for i := range names {
		names[i] = fmt.Sprintf("d%05d.example", i) // already sorted
		rows.AddRow(uuid.NewString(), names[i], true)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlDomainBulkUpsert)).WithArgs(tenant, textArray(names)).WillReturnRows(rows)
	res, err := r.Domains.BulkUpsert(context.Background(), tenant, names)
	if err != nil || len(res.Domains) != MaxBatchDomains || res.Inserted != MaxBatchDomains {
		t.Fatalf("BulkUpsert = %d domains, %d inserted, %v", len(res.Domains), res.Inserted, err)
	}
}

func TestDomainsBulkUpsertErrors(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	t.Run("database error", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainBulkUpsert)).WithArgs(tenant, `{"a.example"}`).
			WillReturnError(&pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
		_, err := r.Domains.BulkUpsert(context.Background(), tenant, []string{"a.example"})
		if !errors.Is(err, sqladapter.ErrDeadlock) || !strings.HasPrefix(err.Error(), "bulk upsert domains: ") {
			t.Fatalf("err = %v, want a classified deadlock", err)
		}
	})
	t.Run("missing row", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainBulkUpsert)).WithArgs(tenant, `{"a.example","b.example"}`).
			WillReturnRows(sqlmock.NewRows([]string{"id", "domain", "inserted"}).AddRow(uuid.NewString(), "a.example", true))
		if _, err := r.Domains.BulkUpsert(context.Background(), tenant, []string{"b.example", "a.example"}); err == nil {
			t.Fatal("a result missing a name was accepted")
		}
	})
	t.Run("unexpected row", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainBulkUpsert)).WithArgs(tenant, `{"a.example"}`).
			WillReturnRows(sqlmock.NewRows([]string{"id", "domain", "inserted"}).
				AddRow(uuid.NewString(), "a.example", true).AddRow(uuid.NewString(), "a.example", true))
		if _, err := r.Domains.BulkUpsert(context.Background(), tenant, []string{"a.example"}); err == nil {
			t.Fatal("a duplicated row was accepted")
		}
	})
}

func TestTextArray(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   []string
		want string
	}{
		{nil, `{}`},
		{[]string{"a.example"}, `{"a.example"}`},
		{[]string{"a", "NULL", ""}, `{"a","NULL",""}`},
		{[]string{`q"uote`, `back\slash`, "com,ma{}"}, `{"q\"uote","back\\slash","com,ma{}"}`},
	}
	for _, c := range cases {
		if got := textArray(c.in); got != c.want {
			t.Errorf("textArray(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestDomainsGetSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	scanned := time.Date(2024, 6, 1, 8, 30, 0, 0, time.UTC)
	want := sampleDomain(tenant, "example.com")
	want.Status, want.ScanCount, want.LastScannedAt = DomainStatusActive, 3, &scanned
	t.Run("found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainGet)).WithArgs(tenant, want.ID).WillReturnRows(domainRows(want))
		got, err := r.Domains.Get(context.Background(), tenant, want.ID)
		if err != nil || got.ID != want.ID || got.Status != DomainStatusActive || got.ScanCount != 3 ||
			got.LastScannedAt == nil || !got.LastScannedAt.Equal(scanned) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainGet)).WithArgs(tenant, want.ID).WillReturnRows(domainRows())
		if _, err := r.Domains.Get(context.Background(), tenant, want.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("nil tenant", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.Get(context.Background(), uuid.Nil, want.ID)
		expectInvalid(t, err, "tenant")
	})
}

func TestDomainsGetByNameSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	want := sampleDomain(tenant, "example.com")
	t.Run("found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainGetByName)).WithArgs(tenant, "example.com").WillReturnRows(domainRows(want))
		got, err := r.Domains.GetByName(context.Background(), tenant, "HTTP://WWW.EXAMPLE.COM:8080/")
		if err != nil || got.ID != want.ID {
			t.Fatalf("GetByName = %+v, %v", got, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainGetByName)).WithArgs(tenant, "example.com").WillReturnError(sql.ErrNoRows)
		if _, err := r.Domains.GetByName(context.Background(), tenant, "example.com"); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.GetByName(context.Background(), tenant, "localhost")
		expectInvalid(t, err, "name")
	})
}

func TestDomainsListSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	a, b := sampleDomain(tenant, "a.example"), sampleDomain(tenant, "b.example")
	b.CreatedAt = b.CreatedAt.Add(time.Millisecond)
	t.Run("all, first page", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		c := sampleDomain(tenant, "c.example")
		mock.ExpectQuery(render(DefaultSchema, sqlDomainList)).WithArgs(tenant, firstPage, uuid.Nil, 3, 0).WillReturnRows(domainRows(a, b, c))
		page, err := r.Domains.List(context.Background(), tenant, DomainFilter{}, Page{Limit: 2})
		if err != nil || len(page.Items) != 2 || page.NextCursor != (cursor{createdAt: b.CreatedAt, id: b.ID}).encode() {
			t.Fatalf("List = %+v, %v", page, err)
		}
	})
	t.Run("by status, cursor", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainListByStatus)).
			WithArgs(tenant, "blocked", a.CreatedAt, a.ID, 11, 0).WillReturnRows(domainRows(b))
		page, err := r.Domains.List(context.Background(), tenant, DomainFilter{Status: DomainStatusBlocked},
			Page{Limit: 10, Cursor: cursor{createdAt: a.CreatedAt, id: a.ID}.encode()})
		if err != nil || len(page.Items) != 1 || page.NextCursor != "" {
			t.Fatalf("List = %+v, %v", page, err)
		}
	})
	t.Run("by status, offset", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainListByStatus)).
			WithArgs(tenant, "error", firstPage, uuid.Nil, DefaultLimit+1, 5).WillReturnRows(domainRows())
		page, err := r.Domains.List(context.Background(), tenant, DomainFilter{Status: DomainStatusError}, Page{Offset: 5})
		if err != nil || page.Items == nil || len(page.Items) != 0 || page.NextCursor != "" {
			t.Fatalf("List = %+v, %v", page, err)
		}
	})
	t.Run("error", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainList)).WithArgs(tenant, firstPage, uuid.Nil, DefaultLimit+1, 0).
			WillReturnError(&pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"})
		if _, err := r.Domains.List(context.Background(), tenant, DomainFilter{}, Page{}); !errors.Is(err, sqladapter.ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
	invalidCases := []struct {
		name   string
		tenant uuid.UUID
		filter DomainFilter
		page   Page
		field  string
	}{
		{"nil tenant", uuid.Nil, DomainFilter{}, Page{}, "tenant"},
		{"bad status", tenant, DomainFilter{Status: "done"}, Page{}, "status"},
		{"bad limit", tenant, DomainFilter{}, Page{Limit: -5}, "limit"},
		{"bad cursor", tenant, DomainFilter{Status: DomainStatusActive}, Page{Cursor: "x"}, "cursor"},
	}
	for _, c := range invalidCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t)
			_, err := r.Domains.List(context.Background(), c.tenant, c.filter, c.page)
			expectInvalid(t, err, c.field)
		})
	}
}

func TestDomainsSetStatusSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	want := sampleDomain(tenant, "example.com")
	want.Status = DomainStatusBlocked
	t.Run("set", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainSetStatus)).WithArgs(tenant, want.ID, "blocked").WillReturnRows(domainRows(want))
		got, err := r.Domains.SetStatus(context.Background(), tenant, want.ID, DomainStatusBlocked)
		if err != nil || got.Status != DomainStatusBlocked {
			t.Fatalf("SetStatus = %+v, %v", got, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainSetStatus)).WithArgs(tenant, want.ID, "active").WillReturnRows(domainRows())
		if _, err := r.Domains.SetStatus(context.Background(), tenant, want.ID, DomainStatusActive); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	for _, s := range []DomainStatus{"", "Active", "done"} {
		t.Run(fmt.Sprintf("invalid %q", s), func(t *testing.T) {
			t.Parallel()
			r, _ := mockRepos(t)
			_, err := r.Domains.SetStatus(context.Background(), tenant, want.ID, s)
			expectInvalid(t, err, "status")
		})
	}
	t.Run("nil tenant", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.SetStatus(context.Background(), uuid.Nil, want.ID, DomainStatusActive)
		expectInvalid(t, err, "tenant")
	})
}

func TestDomainsMarkScannedSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	at := time.Date(2024, 7, 1, 9, 0, 0, 0, time.UTC)
	want := sampleDomain(tenant, "example.com")
	want.ScanCount, want.LastScannedAt = 1, &at
	t.Run("marked", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainMarkScanned)).WithArgs(tenant, want.ID, at).WillReturnRows(domainRows(want))
		got, err := r.Domains.MarkScanned(context.Background(), tenant, want.ID, at)
		if err != nil || got.ScanCount != 1 || got.LastScannedAt == nil || !got.LastScannedAt.Equal(at) {
			t.Fatalf("MarkScanned = %+v, %v", got, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		r, mock := mockRepos(t)
		mock.ExpectQuery(render(DefaultSchema, sqlDomainMarkScanned)).WithArgs(tenant, want.ID, at).WillReturnError(sql.ErrNoRows)
		if _, err := r.Domains.MarkScanned(context.Background(), tenant, want.ID, at); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("zero time", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.MarkScanned(context.Background(), tenant, want.ID, time.Time{})
		expectInvalid(t, err, "at")
	})
	t.Run("nil tenant", func(t *testing.T) {
		t.Parallel()
		r, _ := mockRepos(t)
		_, err := r.Domains.MarkScanned(context.Background(), uuid.Nil, want.ID, at)
		expectInvalid(t, err, "tenant")
	})
}

// TestDomainStatementsFilterByTenant pins the rule every statement of this
// file follows.
func TestDomainStatementsFilterByTenant(t *testing.T) {
	t.Parallel()
	for _, stmt := range []string{sqlDomainGet, sqlDomainGetByName, sqlDomainList, sqlDomainListByStatus, sqlDomainSetStatus, sqlDomainMarkScanned} {
		if !strings.Contains(stmt, "WHERE tenant_id = $1") {
			t.Errorf("statement does not filter by tenant:\n%s", stmt)
		}
	}
	for _, stmt := range []string{sqlDomainUpsert, sqlDomainBulkUpsert} {
		if !strings.Contains(stmt, "ON CONFLICT (tenant_id, domain)") {
			t.Errorf("upsert does not conflict on the tenant's name:\n%s", stmt)
		}
	}
}
