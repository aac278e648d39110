package conformance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// domainTests: upsert of every form of a name to one row per tenant,
// validation, status and scan bookkeeping, filtered pages, bulk upserts
// (alone, inside a transaction, and racing each other).
func domainTests(t *testing.T, r *run) {
	r.test(t, "Domains/UpsertGet", func(t *testing.T) {
		e := r.repoEnv(t)
		ds := e.repos.Domains
		d, err := ds.Upsert(e.ctx, e.tenant, "https://www.Bücher.de:443/katalog?x=1")
		if err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		if d.ID == uuid.Nil || d.TenantID != e.tenant || d.Name != "xn--bcher-kva.de" || d.Status != repo.DomainStatusPending ||
			d.ScanCount != 0 || d.LastScannedAt != nil || d.CreatedAt.IsZero() {
			t.Fatalf("Upsert = %+v", d)
		}
		// Another form of the same name returns the same row, unchanged
		// but for updated_at.
		if _, err := ds.SetStatus(e.ctx, e.tenant, d.ID, repo.DomainStatusActive); err != nil {
			t.Fatal(err)
		}
		again, err := ds.Upsert(e.ctx, e.tenant, "BÜCHER.de.")
		if err != nil || again.ID != d.ID || again.Status != repo.DomainStatusActive || !again.CreatedAt.Equal(d.CreatedAt) ||
			again.UpdatedAt.Before(d.UpdatedAt) {
			t.Fatalf("second Upsert = %+v, %v; want the row of %+v", again, err, d)
		}
		if n := e.count(t, "domains"); n != 1 {
			t.Fatalf("%d domains, want 1", n)
		}

		got, err := ds.Get(e.ctx, e.tenant, d.ID)
		if err != nil || got.ID != d.ID || got.Name != d.Name || got.Status != repo.DomainStatusActive {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		got, err = ds.GetByName(e.ctx, e.tenant, "http://xn--bcher-kva.DE/")
		if err != nil || got.ID != d.ID {
			t.Fatalf("GetByName = %+v, %v", got, err)
		}
		if _, err := ds.Get(e.ctx, e.tenant, uuid.New()); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
		if _, err := ds.GetByName(e.ctx, e.tenant, "missing.example"); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("GetByName missing: %v, want ErrNotFound", err)
		}

		// The same name in another tenant is another domain.
		other := uuid.New()
		od, err := ds.Upsert(e.ctx, other, "bücher.de")
		if err != nil || od.ID == d.ID || od.TenantID != other {
			t.Fatalf("other tenant Upsert = %+v, %v", od, err)
		}
		if _, err := ds.Get(e.ctx, other, d.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("other tenant Get: %v, want ErrNotFound", err)
		}
		if got, err := ds.GetByName(e.ctx, other, "bücher.de"); err != nil || got.ID != od.ID {
			t.Fatalf("other tenant GetByName = %+v, %v", got, err)
		}
	})
	r.test(t, "Domains/InvalidInputWritesNothing", func(t *testing.T) {
		e := r.repoEnv(t)
		ds := e.repos.Domains
		for _, name := range []string{"", "localhost", "exa_mple.com", "10.1.2.3", strings.Repeat("a", 64) + ".com"} {
			_, err := ds.Upsert(e.ctx, e.tenant, name)
			var ve *repo.ValidationError
			if !errors.As(err, &ve) || ve.Field != "name" || !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Errorf("Upsert(%q): %v, want a validation error for name", name, err)
			}
		}
		names := make([]string, 5000)
		for i := range names {
			names[i] = fmt.Sprintf("site%d.example", i)
		}
		names[4321] = "bad..name.example"
		_, err := ds.BulkUpsert(e.ctx, e.tenant, names)
		var ve *repo.ValidationError
		if !errors.As(err, &ve) || ve.Field != "names[4321]" || !strings.Contains(ve.Problem, "empty label") {
			t.Fatalf("BulkUpsert with one bad name: %v, want a validation error for names[4321]", err)
		}
		if _, err := ds.BulkUpsert(e.ctx, e.tenant, make([]string, repo.MaxBatchDomains+1)); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("BulkUpsert of too many: %v, want ErrInvalidInput", err)
		}
		if n := e.count(t, "domains"); n != 0 {
			t.Fatalf("invalid input wrote %d domains", n)
		}

		d, err := ds.Upsert(e.ctx, e.tenant, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ds.SetStatus(e.ctx, e.tenant, d.ID, "done"); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("SetStatus(done): %v, want ErrInvalidInput", err)
		}
		if _, err := ds.MarkScanned(e.ctx, e.tenant, d.ID, time.Time{}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("MarkScanned(zero): %v, want ErrInvalidInput", err)
		}
		if _, err := ds.List(e.ctx, e.tenant, repo.DomainFilter{Status: "Active"}, repo.Page{}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("List(status Active): %v, want ErrInvalidInput", err)
		}
		got, err := ds.Get(e.ctx, e.tenant, d.ID)
		if err != nil || got.Status != repo.DomainStatusPending || got.ScanCount != 0 || !got.UpdatedAt.Equal(d.UpdatedAt) {
			t.Fatalf("after invalid updates: %+v, %v; want it unchanged", got, err)
		}
	})
	r.test(t, "Domains/StatusAndScans", func(t *testing.T) {
		e := r.repoEnv(t)
		ds := e.repos.Domains
		d, err := ds.Upsert(e.ctx, e.tenant, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []repo.DomainStatus{repo.DomainStatusActive, repo.DomainStatusBlocked, repo.DomainStatusError, repo.DomainStatusPending} {
			got, err := ds.SetStatus(e.ctx, e.tenant, d.ID, s)
			if err != nil || got.Status != s || got.ID != d.ID {
				t.Fatalf("SetStatus(%s) = %+v, %v", s, got, err)
			}
		}

		t1 := time.Date(2024, 3, 1, 10, 0, 0, 123456000, time.FixedZone("CET", 3600))
		t2 := t1.Add(time.Hour)
		got, err := ds.MarkScanned(e.ctx, e.tenant, d.ID, t1)
		if err != nil || got.ScanCount != 1 || got.LastScannedAt == nil || !got.LastScannedAt.Equal(t1) {
			t.Fatalf("MarkScanned(t1) = %+v, %v", got, err)
		}
		got, err = ds.MarkScanned(e.ctx, e.tenant, d.ID, t2)
		if err != nil || got.ScanCount != 2 || !got.LastScannedAt.Equal(t2) {
			t.Fatalf("MarkScanned(t2) = %+v, %v", got, err)
		}
		// A scan reported late counts but keeps the latest time.
		got, err = ds.MarkScanned(e.ctx, e.tenant, d.ID, t1)
		if err != nil || got.ScanCount != 3 || !got.LastScannedAt.Equal(t2) {
			t.Fatalf("MarkScanned(t1 again) = %+v, %v", got, err)
		}
		if got.LastScannedAt.Location() != time.UTC {
			t.Errorf("LastScannedAt in %v, want UTC", got.LastScannedAt.Location())
		}

		// Another tenant can neither see nor change it.
		other := uuid.New()
		if _, err := ds.SetStatus(e.ctx, other, d.ID, repo.DomainStatusBlocked); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("other tenant SetStatus: %v, want ErrNotFound", err)
		}
		if _, err := ds.MarkScanned(e.ctx, other, d.ID, t2); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("other tenant MarkScanned: %v, want ErrNotFound", err)
		}
		if page, err := ds.List(e.ctx, other, repo.DomainFilter{}, repo.Page{}); err != nil || len(page.Items) != 0 {
			t.Errorf("other tenant List = %+v, %v; want empty", page, err)
		}
		final, err := ds.Get(e.ctx, e.tenant, d.ID)
		if err != nil || final.Status != repo.DomainStatusPending || final.ScanCount != 3 {
			t.Fatalf("after other tenant's attempts: %+v, %v", final, err)
		}
		if _, err := ds.SetStatus(e.ctx, e.tenant, uuid.New(), repo.DomainStatusActive); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("SetStatus missing: %v, want ErrNotFound", err)
		}
		if _, err := ds.MarkScanned(e.ctx, e.tenant, uuid.New(), t2); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("MarkScanned missing: %v, want ErrNotFound", err)
		}
	})
	r.test(t, "Domains/List", func(t *testing.T) {
		e := r.repoEnv(t)
		ds := e.repos.Domains
		// 20 domains from one statement share created_at, so their order
		// comes from the id; 5 more come later.
		names := make([]string, 20)
		for i := range names {
			names[i] = fmt.Sprintf("bulk%02d.example", i)
		}
		res, err := ds.BulkUpsert(e.ctx, e.tenant, names)
		if err != nil {
			t.Fatal(err)
		}
		all := res.IDs()
		slices.SortFunc(all, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		for i := range 5 {
			d, err := ds.Upsert(e.ctx, e.tenant, fmt.Sprintf("late%d.example", i))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, d.ID)
		}
		if _, err := ds.Upsert(e.ctx, uuid.New(), "noise.example"); err != nil {
			t.Fatal(err)
		}

		ids, pages := walkDomains(t, e, repo.DomainFilter{}, 10)
		if pages != 3 || !slices.Equal(ids, all) {
			t.Fatalf("cursor walk: %d pages\n got %v\nwant %v", pages, ids, all)
		}
		var byOffset []uuid.UUID
		for off := 0; off < 25; off += 10 {
			page, err := ds.List(e.ctx, e.tenant, repo.DomainFilter{}, repo.Page{Limit: 10, Offset: off})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.Items {
				byOffset = append(byOffset, d.ID)
			}
		}
		if !slices.Equal(byOffset, all) {
			t.Fatalf("offset walk\n got %v\nwant %v", byOffset, all)
		}

		// Status filter: every third domain blocked.
		var blocked []uuid.UUID
		for i, id := range all {
			if i%3 == 0 {
				if _, err := ds.SetStatus(e.ctx, e.tenant, id, repo.DomainStatusBlocked); err != nil {
					t.Fatal(err)
				}
				blocked = append(blocked, id)
			}
		}
		ids, _ = walkDomains(t, e, repo.DomainFilter{Status: repo.DomainStatusBlocked}, 4)
		if !slices.Equal(ids, blocked) {
			t.Fatalf("blocked walk\n got %v\nwant %v", ids, blocked)
		}
		ids, _ = walkDomains(t, e, repo.DomainFilter{Status: repo.DomainStatusPending}, 7)
		if len(ids) != len(all)-len(blocked) {
			t.Fatalf("pending walk: %d ids, want %d", len(ids), len(all)-len(blocked))
		}
		page, err := ds.List(e.ctx, e.tenant, repo.DomainFilter{Status: repo.DomainStatusBlocked}, repo.Page{Limit: 3, Offset: 6})
		if err != nil || len(page.Items) != 3 || page.Items[0].ID != blocked[6] {
			t.Fatalf("blocked offset page = %+v, %v", page, err)
		}
		if page, err := ds.List(e.ctx, e.tenant, repo.DomainFilter{Status: repo.DomainStatusError}, repo.Page{}); err != nil ||
			len(page.Items) != 0 || page.NextCursor != "" {
			t.Fatalf("error list = %+v, %v; want empty", page, err)
		}
	})
	r.test(t, "Domains/BulkUpsert", func(t *testing.T) {
		e := r.repoEnv(t)
		ds := e.repos.Domains
		// 10,000 names for 6,000 domains; 2,000 for 1,500 off a
		// transaction pooler (see run.size).
		distinct := r.size(6000, 1500)
		pre, err := ds.Upsert(e.ctx, e.tenant, "site00042.example") // one exists already
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, r.size(repo.MaxBatchDomains, 2000))
		want := make([]string, len(names)) // normalised form of each input
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range names {
			n := i
			if i >= distinct {
				n = rng.IntN(distinct) // duplicates, in other forms
			}
			want[i] = fmt.Sprintf("site%05d.example", n)
			names[i] = bulkForms(want[i], i+n)
		}
		rng.Shuffle(len(names), func(i, j int) {
			names[i], names[j] = names[j], names[i]
			want[i], want[j] = want[j], want[i]
		})

		res, err := ds.BulkUpsert(e.ctx, e.tenant, names)
		if err != nil {
			t.Fatalf("BulkUpsert: %v", err)
		}
		if len(res.Domains) != distinct || res.Inserted != distinct-1 || len(res.Index) != len(names) {
			t.Fatalf("BulkUpsert: %d domains, %d inserted, %d index entries; want %d, %d, %d",
				len(res.Domains), res.Inserted, len(res.Index), distinct, distinct-1, len(names))
		}
		byName := make(map[string]uuid.UUID, distinct)
		for _, d := range res.Domains {
			if _, dup := byName[d.Name]; dup || d.ID == uuid.Nil {
				t.Fatalf("bad entry %+v", d)
			}
			byName[d.Name] = d.ID
			if d.Inserted == (d.Name == "site00042.example") {
				t.Fatalf("%s: Inserted = %t", d.Name, d.Inserted)
			}
		}
		if byName["site00042.example"] != pre.ID {
			t.Fatalf("existing domain got id %v, want %v", byName["site00042.example"], pre.ID)
		}
		for i := range names {
			if got := res.Domains[res.Index[i]].Name; got != want[i] || res.ID(i) != byName[want[i]] {
				t.Fatalf("names[%d] = %q became %q (%v), want %q", i, names[i], got, res.ID(i), want[i])
			}
		}
		if n := e.count(t, "domains"); n != distinct {
			t.Fatalf("%d domains stored, want %d", n, distinct)
		}

		// Running it again changes nothing and returns the same ids.
		again, err := ds.BulkUpsert(e.ctx, e.tenant, names)
		if err != nil {
			t.Fatalf("second BulkUpsert: %v", err)
		}
		if again.Inserted != 0 || len(again.Domains) != distinct {
			t.Fatalf("second BulkUpsert: %d domains, %d inserted", len(again.Domains), again.Inserted)
		}
		for i := range names {
			if again.ID(i) != res.ID(i) {
				t.Fatalf("names[%d]: id %v, first time %v", i, again.ID(i), res.ID(i))
			}
		}
		if n := e.count(t, "domains"); n != distinct {
			t.Fatalf("%d domains after the second run, want %d", n, distinct)
		}
		d, err := ds.GetByName(e.ctx, e.tenant, "https://site01234.example/")
		if err != nil || d.ID != byName["site01234.example"] {
			t.Fatalf("GetByName = %+v, %v", d, err)
		}
	})
	r.test(t, "Domains/BulkUpsertInTx", func(t *testing.T) {
		e := r.repoEnv(t)
		names := []string{"a.example", "B.example", "www.a.example"}
		errRollback := errors.New("roll back")
		err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			res, err := repo.New(tx, repo.WithSchema(e.schema)).Domains.BulkUpsert(e.ctx, e.tenant, names)
			if err != nil {
				return err
			}
			if len(res.Domains) != 2 || res.Inserted != 2 {
				t.Errorf("in tx: %+v", res)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("InTx: %v", err)
		}
		if n := e.count(t, "domains"); n != 0 {
			t.Fatalf("rolled back upsert left %d domains", n)
		}

		var ids []uuid.UUID
		err = e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			res, err := repo.New(tx, repo.WithSchema(e.schema)).Domains.BulkUpsert(e.ctx, e.tenant, names)
			ids = res.IDs()
			return err
		})
		if err != nil {
			t.Fatalf("InTx: %v", err)
		}
		if n := e.count(t, "domains"); n != 2 {
			t.Fatalf("%d domains, want 2", n)
		}
		for i, name := range []string{"a.example", "b.example"} {
			if d, err := e.repos.Domains.GetByName(e.ctx, e.tenant, name); err != nil || d.ID != ids[i] {
				t.Fatalf("GetByName(%s) = %+v, %v; want id %v", name, d, err, ids[i])
			}
		}
	})
	// Domains/ConcurrentUpserts has 8 goroutines upsert
	// overlapping names — shuffled, in bulk and one by one — through the
	// URL under test: no call fails, every name is stored once, and every
	// call sees the same id for it.
	r.test(t, "Domains/ConcurrentUpserts", func(t *testing.T) {
		e := r.repoEnv(t)
		const workers = 8
		pool, each := r.size(1500, 300), r.size(1000, 200) // see run.size
		var (
			mu   sync.Mutex
			seen = map[string]uuid.UUID{}
			errs []error
			wg   sync.WaitGroup
		)
		record := func(name string, id uuid.UUID) {
			mu.Lock()
			defer mu.Unlock()
			if prev, ok := seen[name]; ok && prev != id {
				errs = append(errs, fmt.Errorf("%s: ids %v and %v", name, prev, id))
			}
			seen[name] = id
		}
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				names := make([]string, each)
				for i := range names {
					names[i] = bulkForms(fmt.Sprintf("c%04d.example", rng.IntN(pool)), w+i)
				}
				for round := range 3 {
					res, err := e.repos.Domains.BulkUpsert(e.ctx, e.tenant, names)
					if err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("worker %d round %d: %w", w, round, err))
						mu.Unlock()
						return
					}
					for _, d := range res.Domains {
						record(d.Name, d.ID)
					}
					for _, name := range names[:20] {
						d, err := e.repos.Domains.Upsert(e.ctx, e.tenant, name)
						if err != nil {
							mu.Lock()
							errs = append(errs, fmt.Errorf("worker %d Upsert: %w", w, err))
							mu.Unlock()
							return
						}
						record(d.Name, d.ID)
					}
					rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if n := e.count(t, "domains"); n != len(seen) {
			t.Fatalf("%d domains stored, %d distinct names upserted", n, len(seen))
		}
		var dups int
		if err := e.db.GetContext(e.ctx, &dups, "SELECT count(*) - count(DISTINCT domain) FROM "+e.schema+".domains WHERE tenant_id = $1", e.tenant); err != nil || dups != 0 {
			t.Fatalf("duplicate names: %d, %v", dups, err)
		}
	})
}

// walkDomains lists every page of the filter with limit and returns the
// ids in order.
func walkDomains(t *testing.T, e *repoEnv, filter repo.DomainFilter, limit int) (ids []uuid.UUID, pages int) {
	t.Helper()
	for cur := ""; ; {
		page, err := e.repos.Domains.List(e.ctx, e.tenant, filter, repo.Page{Limit: limit, Cursor: cur})
		if err != nil {
			t.Fatalf("List page %d: %v", pages, err)
		}
		pages++
		for _, d := range page.Items {
			if filter.Status != "" && d.Status != filter.Status {
				t.Fatalf("List(%s) returned %+v", filter.Status, d)
			}
			ids = append(ids, d.ID)
		}
		if page.NextCursor == "" {
			return ids, pages
		}
		if pages > 100 {
			t.Fatal("cursor walk does not end")
		}
		cur = page.NextCursor
	}
}

// bulkForms writes name in one of several forms that normalise to it.
func bulkForms(name string, i int) string {
	switch i % 5 {
	case 1:
		return strings.ToUpper(name)
	case 2:
		return "https://www." + name + "/path?q=" + fmt.Sprint(i)
	case 3:
		return "HTTP://" + name + ":8080"
	case 4:
		return " " + name + ". "
	}
	return name
}
