package repo_test

import (
	"context"
	"fmt"
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
