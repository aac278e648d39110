package repo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// TestDomainsBulkUpsertNoRewrite: through the transaction pooler on both
// drivers, by COPY (a large call on the handle) and by the statement (a
// small call, and a call inside a transaction), new names are inserted,
// and names that exist keep their row as it was: same id, same row version
// (xmin), same updated_at.
func TestDomainsBulkUpsertNoRewrite(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		_, db, schema := dbRepos(t, drv, 4)
		ctx := context.Background()
		tenant := uuid.New()
		version := func() map[string]string {
			rows, err := db.QueryContext(ctx, fmt.Sprintf(
				`SELECT domain, id::text || '/' || xmin::text || '/' || updated_at::text FROM %s.domains WHERE tenant_id = $1`, schema), tenant)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			out := map[string]string{}
			for rows.Next() {
				var name, v string
				if err := rows.Scan(&name, &v); err != nil {
					t.Fatal(err)
				}
				out[name] = v
			}
			return out
		}
		names := func(from, to int) []string {
			var out []string
			for i := from; i < to; i++ {
				out = append(out, fmt.Sprintf("bulk-%05d.example", i))
			}
			return out
		}
		upsert := func(q sqladapter.Querier, ns []string, wantInserted int) repo.BulkUpsertResult {
			t.Helper()
			res, err := repo.New(q, repo.WithSchema(schema)).Domains.BulkUpsert(ctx, tenant, ns)
			if err != nil {
				t.Fatal(err)
			}
			if res.Inserted != wantInserted || len(res.Domains) != len(ns) {
				t.Fatalf("BulkUpsert of %d: %d domains, %d inserted; want %d inserted", len(ns), len(res.Domains), res.Inserted, wantInserted)
			}
			return res
		}
		first := upsert(db, names(0, 2*repo.BulkCopyMin), 2*repo.BulkCopyMin) // by COPY
		before := version()
		// Half of them again plus as many new ones, by COPY.
		second := upsert(db, names(repo.BulkCopyMin, 3*repo.BulkCopyMin), repo.BulkCopyMin)
		for i, d := range second.Domains[:repo.BulkCopyMin] {
			if d.Inserted || d.ID != first.Domains[repo.BulkCopyMin+i].ID {
				t.Fatalf("%s: %+v, first %+v", d.Name, d, first.Domains[repo.BulkCopyMin+i])
			}
		}
		// A few by the statement, on the handle and inside a transaction.
		upsert(db, names(0, 10), 0)
		err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
			upsert(tx, append(names(5, 15), "bulk-new.example"), 1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		after := version()
		for name, v := range before {
			if after[name] != v {
				t.Errorf("%s was rewritten: %s, before %s", name, after[name], v)
			}
		}
		if len(after) != 3*repo.BulkCopyMin+1 {
			t.Errorf("%d domains stored, want %d", len(after), 3*repo.BulkCopyMin+1)
		}
	})
}

// TestDomainsBulkUpsertCopyRace: 8 calls store the same 2,000 new names at
// once by COPY; the ones that lose the race fall back to the statement
// inside their transaction. None fails, every name is stored once, and
// every call returns the same id for it.
func TestDomainsBulkUpsertCopyRace(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		_, db, schema := dbRepos(t, drv, 8)
		ctx := context.Background()
		tenant := uuid.New()
		names := make([]string, 2*repo.BulkCopyMin)
		for i := range names {
			names[i] = fmt.Sprintf("race-%05d.example", i)
		}
		results := make([]repo.BulkUpsertResult, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for w := range results {
			wg.Go(func() {
				ns := slices.Clone(names)
				rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
				results[w], errs[w] = repo.New(db, repo.WithSchema(schema)).Domains.BulkUpsert(ctx, tenant, ns)
			})
		}
		wg.Wait()
		ids := map[string]uuid.UUID{}
		inserted := 0
		for w, res := range results {
			if errs[w] != nil {
				t.Fatalf("call %d: %v", w, errs[w])
			}
			inserted += res.Inserted
			for _, d := range res.Domains {
				if prev, ok := ids[d.Name]; ok && prev != d.ID {
					t.Fatalf("%s: ids %v and %v", d.Name, prev, d.ID)
				}
				ids[d.Name] = d.ID
			}
		}
		if len(ids) != len(names) || inserted != len(names) {
			t.Fatalf("%d names, %d inserted in all; want %d each", len(ids), inserted, len(names))
		}
		var n int
		if err := db.GetContext(ctx, &n, fmt.Sprintf(`SELECT count(*) FROM %s.domains WHERE tenant_id = $1`, schema), tenant); err != nil || n != len(names) {
			t.Fatalf("%d domains stored (%v), want %d", n, err, len(names))
		}
	})
}
