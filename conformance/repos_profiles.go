package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// profileTests: create, read, partial update, delete; the per-tenant
// case-insensitive email constraint; invalid input that writes nothing;
// tenant isolation; keyset and offset pages.
func profileTests(t *testing.T, r *run) {
	r.test(t, "Profiles/CRUD", func(t *testing.T) {
		e := r.repoEnv(t)
		ps := e.repos.Profiles
		p, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{
			Email: "  Ann.Lee@Example.COM ", DisplayName: strings.Repeat("é", 200),
			Attributes: json.RawMessage(`{"plan":"pro","seats":3,"tags":["a","b"]}`),
		})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if p.ID == uuid.Nil || p.TenantID != e.tenant || p.Email != "Ann.Lee@Example.COM" ||
			p.DisplayName != strings.Repeat("é", 200) || p.CreatedAt.IsZero() || !p.UpdatedAt.Equal(p.CreatedAt) {
			t.Fatalf("Create = %+v", p)
		}
		if !sameJSONValue(t, p.Attributes, []byte(`{"plan":"pro","seats":3,"tags":["a","b"]}`)) {
			t.Fatalf("attributes = %s", p.Attributes)
		}

		got, err := ps.Get(e.ctx, e.tenant, p.ID)
		if err != nil || got.ID != p.ID || got.Email != p.Email || !got.CreatedAt.Equal(p.CreatedAt) || !sameJSONValue(t, got.Attributes, p.Attributes) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, p)
		}
		if got.CreatedAt.Location().String() != "UTC" {
			t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
		}

		// Partial updates: nil keeps the stored value.
		up, err := ps.Update(e.ctx, e.tenant, p.ID, repo.ProfileUpdate{DisplayName: ptr("Ann Lee")})
		if err != nil {
			t.Fatalf("Update display name: %v", err)
		}
		if up.DisplayName != "Ann Lee" || up.Email != p.Email || !sameJSONValue(t, up.Attributes, p.Attributes) ||
			!up.CreatedAt.Equal(p.CreatedAt) || up.UpdatedAt.Before(p.UpdatedAt) {
			t.Fatalf("after display name update: %+v", up)
		}
		up, err = ps.Update(e.ctx, e.tenant, p.ID, repo.ProfileUpdate{
			Email: ptr("ann@example.org"), Attributes: ptr(json.RawMessage(`{"plan":"free"}`)),
		})
		if err != nil {
			t.Fatalf("Update email, attributes: %v", err)
		}
		if up.Email != "ann@example.org" || up.DisplayName != "Ann Lee" || !sameJSONValue(t, up.Attributes, []byte(`{"plan":"free"}`)) {
			t.Fatalf("after email/attributes update: %+v", up)
		}
		// Changing only the case of one's own email is no conflict.
		if up, err = ps.Update(e.ctx, e.tenant, p.ID, repo.ProfileUpdate{Email: ptr("ANN@example.org")}); err != nil || up.Email != "ANN@example.org" {
			t.Fatalf("Update email case = %+v, %v", up, err)
		}
		// An empty attributes value resets them to {}.
		if up, err = ps.Update(e.ctx, e.tenant, p.ID, repo.ProfileUpdate{Attributes: ptr(json.RawMessage(nil))}); err != nil || string(up.Attributes) != "{}" {
			t.Fatalf("Update attributes reset = %s, %v", up.Attributes, err)
		}
		if got, err := ps.Get(e.ctx, e.tenant, p.ID); err != nil || got.Email != "ANN@example.org" || string(got.Attributes) != "{}" {
			t.Fatalf("Get after updates = %+v, %v", got, err)
		}

		if err := ps.Delete(e.ctx, e.tenant, p.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := ps.Get(e.ctx, e.tenant, p.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
		if err := ps.Delete(e.ctx, e.tenant, p.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("second Delete: %v, want ErrNotFound", err)
		}
		if _, err := ps.Update(e.ctx, e.tenant, p.ID, repo.ProfileUpdate{DisplayName: ptr("x")}); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Update after Delete: %v, want ErrNotFound", err)
		}
		if n := e.count(t, "profiles"); n != 0 {
			t.Fatalf("%d profiles left", n)
		}
	})
	r.test(t, "Profiles/EmailConflict", func(t *testing.T) {
		e := r.repoEnv(t)
		ps := e.repos.Profiles
		ann, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "ann@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "ANN@Example.com", DisplayName: "other Ann"})
		if !errors.Is(err, sqladapter.ErrConflict) {
			t.Fatalf("Create with the same email in another case: %v, want ErrConflict", err)
		}
		var se *sqladapter.Error
		if !errors.As(err, &se) || se.Constraint != "profiles_tenant_email_key" {
			t.Fatalf("conflict error %v does not name profiles_tenant_email_key", err)
		}
		bob, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "bob@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Update(e.ctx, e.tenant, bob.ID, repo.ProfileUpdate{Email: ptr("Ann@EXAMPLE.com")}); !errors.Is(err, sqladapter.ErrConflict) {
			t.Fatalf("Update to a taken email: %v, want ErrConflict", err)
		}
		if got, err := ps.Get(e.ctx, e.tenant, bob.ID); err != nil || got.Email != "bob@example.com" {
			t.Fatalf("Bob after the failed update = %+v, %v", got, err)
		}
		// Another tenant may use the same address.
		if _, err := ps.Create(e.ctx, uuid.New(), repo.NewProfile{Email: "ann@example.com"}); err != nil {
			t.Fatalf("same email in another tenant: %v", err)
		}
		if n := e.count(t, "profiles"); n != 2 {
			t.Fatalf("%d profiles, want 2", n)
		}
		if got, err := ps.Get(e.ctx, e.tenant, ann.ID); err != nil || got.DisplayName != "" {
			t.Fatalf("Ann = %+v, %v", got, err)
		}
	})
	r.test(t, "Profiles/InvalidInputWritesNothing", func(t *testing.T) {
		e := r.repoEnv(t)
		ps := e.repos.Profiles
		bad := []repo.NewProfile{
			{},
			{Email: "not-an-email"},
			{Email: "Ann <ann@example.com>"},
			{Email: "ann@example.com", DisplayName: strings.Repeat("x", 201)},
			{Email: "ann@example.com", Attributes: json.RawMessage(`[1,2]`)},
			{Email: "ann@example.com", Attributes: json.RawMessage(`{"a":`)},
		}
		for _, in := range bad {
			if _, err := ps.Create(e.ctx, e.tenant, in); !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Errorf("Create(%+v): %v, want ErrInvalidInput", in, err)
			}
		}
		if n := e.count(t, "profiles"); n != 0 {
			t.Fatalf("invalid creates wrote %d profiles", n)
		}
		p, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "ann@example.com", DisplayName: "Ann"})
		if err != nil {
			t.Fatal(err)
		}
		for _, up := range []repo.ProfileUpdate{
			{},
			{Email: ptr("nope")},
			{DisplayName: ptr("ok"), Email: ptr("")},
			{DisplayName: ptr(strings.Repeat("x", 201))},
			{Attributes: ptr(json.RawMessage(`"text"`))},
		} {
			if _, err := ps.Update(e.ctx, e.tenant, p.ID, up); !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Errorf("Update(%+v): %v, want ErrInvalidInput", up, err)
			}
		}
		got, err := ps.Get(e.ctx, e.tenant, p.ID)
		if err != nil || got.Email != p.Email || got.DisplayName != "Ann" || !got.UpdatedAt.Equal(p.UpdatedAt) {
			t.Fatalf("after invalid updates: %+v, %v; want it unchanged", got, err)
		}
		if _, err := ps.Create(e.ctx, uuid.Nil, repo.NewProfile{Email: "z@example.com"}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("nil tenant: %v, want ErrInvalidInput", err)
		}
	})
	r.test(t, "Profiles/TenantIsolation", func(t *testing.T) {
		e := r.repoEnv(t)
		ps := e.repos.Profiles
		other := uuid.New()
		p, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "ann@example.com", DisplayName: "Ann"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Get(e.ctx, other, p.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("other tenant Get: %v, want ErrNotFound", err)
		}
		if _, err := ps.Update(e.ctx, other, p.ID, repo.ProfileUpdate{DisplayName: ptr("Mallory")}); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("other tenant Update: %v, want ErrNotFound", err)
		}
		if err := ps.Delete(e.ctx, other, p.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("other tenant Delete: %v, want ErrNotFound", err)
		}
		page, err := ps.List(e.ctx, other, repo.Page{})
		if err != nil || len(page.Items) != 0 {
			t.Errorf("other tenant List = %+v, %v; want empty", page, err)
		}
		got, err := ps.Get(e.ctx, e.tenant, p.ID)
		if err != nil || got.DisplayName != "Ann" || !got.UpdatedAt.Equal(p.UpdatedAt) {
			t.Fatalf("after other tenant's attempts: %+v, %v; want it unchanged", got, err)
		}
	})
	r.test(t, "Profiles/Pagination", func(t *testing.T) {
		e := r.repoEnv(t)
		ps := e.repos.Profiles
		var ids []uuid.UUID
		// 15 profiles in one transaction share created_at (now() is the
		// transaction's start), so their order comes from the id alone.
		err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			ids = ids[:0]
			txps := repo.New(tx, repo.WithSchema(e.schema)).Profiles
			for i := range 15 {
				p, err := txps.Create(e.ctx, e.tenant, repo.NewProfile{Email: fmt.Sprintf("tx%02d@example.com", i)})
				if err != nil {
					return err
				}
				ids = append(ids, p.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("InTx: %v", err)
		}
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		for i := range 10 {
			p, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: fmt.Sprintf("solo%02d@example.com", i)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, p.ID)
		}
		// Noise in another tenant.
		if _, err := ps.Create(e.ctx, uuid.New(), repo.NewProfile{Email: "noise@example.com"}); err != nil {
			t.Fatal(err)
		}

		var walked []uuid.UUID
		pages := 0
		for cur := ""; ; {
			page, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 10, Cursor: cur})
			if err != nil {
				t.Fatalf("List page %d: %v", pages, err)
			}
			pages++
			for _, p := range page.Items {
				walked = append(walked, p.ID)
			}
			if page.NextCursor == "" {
				break
			}
			if pages > 10 {
				t.Fatal("cursor walk does not end")
			}
			cur = page.NextCursor
		}
		if pages != 3 || !slices.Equal(walked, ids) {
			t.Fatalf("cursor walk: %d pages, %d ids\n got %v\nwant %v", pages, len(walked), walked, ids)
		}

		var byOffset []uuid.UUID
		for off := 0; off < 30; off += 10 {
			page, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 10, Offset: off})
			if err != nil {
				t.Fatalf("List offset %d: %v", off, err)
			}
			for _, p := range page.Items {
				byOffset = append(byOffset, p.ID)
			}
		}
		if !slices.Equal(byOffset, ids) {
			t.Fatalf("offset walk\n got %v\nwant %v", byOffset, ids)
		}

		// A full page that is the last has no cursor: NextCursor is ""
		// exactly when nothing follows, by cursor or by offset.
		page, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 25})
		if err != nil || len(page.Items) != 25 || page.NextCursor != "" {
			t.Fatalf("List 25 = %d items, cursor %q, %v; want all, no cursor", len(page.Items), page.NextCursor, err)
		}
		page, err = ps.List(e.ctx, e.tenant, repo.Page{Limit: 24})
		if err != nil || len(page.Items) != 24 || page.NextCursor == "" {
			t.Fatalf("List 24 = %d items, cursor %q, %v; want a cursor", len(page.Items), page.NextCursor, err)
		}
		last, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 24, Cursor: page.NextCursor})
		if err != nil || len(last.Items) != 1 || last.NextCursor != "" {
			t.Fatalf("page after = %+v, %v; want the last item, no cursor", last, err)
		}
		if off, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 5, Offset: 20}); err != nil || len(off.Items) != 5 || off.NextCursor != "" {
			t.Fatalf("last page by offset = %d items, cursor %q, %v", len(off.Items), off.NextCursor, err)
		}

		// A cursor stays valid while items are added.
		first, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ps.Create(e.ctx, e.tenant, repo.NewProfile{Email: "late@example.com"}); err != nil {
			t.Fatal(err)
		}
		next, err := ps.List(e.ctx, e.tenant, repo.Page{Limit: 5, Cursor: first.NextCursor})
		if err != nil || len(next.Items) != 5 || next.Items[0].ID != ids[5] {
			t.Fatalf("second page after an insert = %+v, %v", next, err)
		}

		if _, err := ps.List(e.ctx, e.tenant, repo.Page{Cursor: "garbage"}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("bad cursor: %v, want ErrInvalidInput", err)
		}
	})
}
