package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// Create validates the input, stores the profile and reports a duplicate
// email (in any case) as a conflict. (sqlmock stands in for the database;
// with a real one, db comes from driverconf.Open.)
func ExampleProfiles_Create() {
	mockDB, mock, err := sqlmock.New()
	if err != nil {
		log.Fatal(err)
	}
	db := sqladapter.Wrap(mockDB)
	defer db.Close()
	tenant := uuid.MustParse("6f1c2a7e-0000-4000-8000-000000000001")
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	mock.ExpectQuery(`INSERT INTO public\.profiles`).
		WithArgs(tenant, "Ann@Example.com", "Ann", json.RawMessage(`{"plan": "pro"}`)).
		WillReturnRows(sqlmock.NewRows([]string{"id", "tenant_id", "email", "display_name", "attributes", "created_at", "updated_at"}).
			AddRow("0b7e4f3c-0000-4000-8000-000000000002", tenant.String(), "Ann@Example.com", "Ann", []byte(`{"plan": "pro"}`), at, at))
	mock.ExpectQuery(`INSERT INTO public\.profiles`).
		WillReturnError(&pgconn.PgError{Code: "23505", ConstraintName: "profiles_tenant_email_key"})

	ctx := context.Background()
	profiles := repo.New(db).Profiles
	p, err := profiles.Create(ctx, tenant, repo.NewProfile{
		Email:       " Ann@Example.com ",
		DisplayName: "Ann",
		Attributes:  json.RawMessage(`{"plan": "pro"}`),
	})
	fmt.Println(p.ID, p.Email, string(p.Attributes), err)

	_, err = profiles.Create(ctx, tenant, repo.NewProfile{Email: "ann@example.com"})
	fmt.Println("conflict:", errors.Is(err, sqladapter.ErrConflict))

	_, err = profiles.Create(ctx, tenant, repo.NewProfile{Email: "Ann <ann@example.com>"})
	fmt.Println("invalid:", errors.Is(err, sqladapter.ErrInvalidInput))
	var ve *repo.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("field:", ve.Field)
	}
	// Output:
	// 0b7e4f3c-0000-4000-8000-000000000002 Ann@Example.com {"plan": "pro"} <nil>
	// conflict: true
	// invalid: true
	// field: email
}

// List pages through a tenant's profiles with the opaque cursor of the
// previous page.
func ExampleProfiles_List() {
	mockDB, mock, err := sqlmock.New()
	if err != nil {
		log.Fatal(err)
	}
	db := sqladapter.Wrap(mockDB)
	defer db.Close()
	tenant := uuid.MustParse("6f1c2a7e-0000-4000-8000-000000000001")
	cols := []string{"id", "tenant_id", "email", "display_name", "attributes", "created_at", "updated_at"}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	page1 := sqlmock.NewRows(cols)
	for i := 1; i <= 3; i++ { // a page of 2 asks for 3: the third says another page follows
		page1.AddRow(fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i), tenant.String(), fmt.Sprintf("user%d@example.com", i), "", []byte(`{}`), at, at)
	}
	mock.ExpectQuery(`SELECT .* FROM public\.profiles`).WillReturnRows(page1)
	mock.ExpectQuery(`SELECT .* FROM public\.profiles`).WillReturnRows(sqlmock.NewRows(cols).
		AddRow("00000000-0000-4000-8000-000000000003", tenant.String(), "user3@example.com", "", []byte(`{}`), at, at))

	ctx := context.Background()
	profiles := repo.New(db).Profiles
	page := repo.Page{Limit: 2}
	for {
		res, err := profiles.List(ctx, tenant, page)
		if err != nil {
			log.Fatal(err)
		}
		for _, p := range res.Items {
			fmt.Println(p.Email)
		}
		if res.NextCursor == "" {
			break
		}
		page.Cursor = res.NextCursor
	}
	// Output:
	// user1@example.com
	// user2@example.com
	// user3@example.com
}

// BulkUpsert stores many names in one statement: forms of one name
// collapse into one domain, and the result maps every input to its id.
func ExampleDomains_BulkUpsert() {
	mockDB, mock, err := sqlmock.New()
	if err != nil {
		log.Fatal(err)
	}
	db := sqladapter.Wrap(mockDB)
	defer db.Close()
	tenant := uuid.MustParse("6f1c2a7e-0000-4000-8000-000000000001")
	mock.ExpectQuery(`INSERT INTO public\.domains .* unnest`).
		WithArgs(tenant, `{"example.com","xn--bcher-kva.de"}`). // distinct names, sorted
		WillReturnRows(sqlmock.NewRows([]string{"id", "domain", "inserted"}).
			AddRow("00000000-0000-4000-8000-0000000000aa", "example.com", false).
			AddRow("00000000-0000-4000-8000-0000000000bb", "xn--bcher-kva.de", true))

	res, err := repo.New(db).Domains.BulkUpsert(context.Background(), tenant, []string{
		"https://www.Example.com/pricing",
		"bücher.de",
		"EXAMPLE.COM.",
	})
	if err != nil {
		log.Fatal(err)
	}
	for i := range res.Index {
		d := res.Domains[res.Index[i]]
		fmt.Println(i, d.Name, d.ID)
	}
	fmt.Println("distinct:", len(res.Domains), "inserted:", res.Inserted)

	_, err = repo.New(db).Domains.BulkUpsert(context.Background(), tenant, []string{"ok.example", "not a domain"})
	fmt.Println(err)
	// Output:
	// 0 example.com 00000000-0000-4000-8000-0000000000aa
	// 1 xn--bcher-kva.de 00000000-0000-4000-8000-0000000000bb
	// 2 example.com 00000000-0000-4000-8000-0000000000aa
	// distinct: 2 inserted: 1
	// repo: invalid names[1]: "not a domain" is not a valid domain name: disallowed rune U+0020
}

func ExampleNormalizeDomain() {
	for _, raw := range []string{
		"HTTPS://www.Example.COM:443/path?q=1",
		"shop.example.com.",
		"bücher.de",
		"www.com",
		"localhost",
	} {
		name, err := repo.NormalizeDomain(raw)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(name)
	}
	// Output:
	// example.com
	// shop.example.com
	// xn--bcher-kva.de
	// www.com
	// error: repo: invalid domain: "localhost" needs at least two labels (like example.com)
}
