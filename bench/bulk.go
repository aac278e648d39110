package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// copyTargetDDL: the COPY anchor writes into the project's domains table
// itself, so nothing else is needed.
const copyTargetDDL = `SELECT 1`

// bulkTodaySQL is Domains.BulkUpsert's statement before issue 12: one
// INSERT … ON CONFLICT DO UPDATE with the names as an array, which rewrote
// every existing row.
const bulkTodaySQL = `INSERT INTO ` + schema + `.domains AS d (tenant_id, domain)
SELECT $1::uuid, n.name FROM unnest($2::text[]) AS n(name) ORDER BY n.name
ON CONFLICT (tenant_id, domain) DO UPDATE SET updated_at = now()
RETURNING d.id, d.domain, (d.xmax = 0) AS inserted`

// The bulk contenders, per driver.
const (
	bCopy    = "COPY"              // the anchor: the driver's COPY of the rows into domains
	bUpsert  = "BulkUpsert"        // 10,000 new names
	bToday   = "today's statement" // the statement before issue 12
	bReWrite = "BulkUpsert again"  // the same 10,000 names, all existing
)

type bulkResult struct {
	names int
	times map[string]map[string][]time.Duration // driver → contender → one per round
	// rewritten counts, per driver, the rows whose version changed when
	// BulkUpsert ran again over existing names (want 0).
	rewritten map[string]int64
}

func measureBulk(ctx context.Context, e *env, o options, m *machine) (*bulkResult, error) {
	n := repo.MaxBatchDomains
	if o.smoke {
		n = 2 * repo.BulkCopyMin
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("shop-%05d.example.com", i)
	}
	res := &bulkResult{names: n, times: map[string]map[string][]time.Duration{}, rewritten: map[string]int64{}}
	order := []string{bCopy, bUpsert, bToday}
	for r := range o.rounds {
		for _, drv := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
			db, err := e.poolsafe(drv, 2)
			if err != nil {
				return nil, err
			}
			if res.times[string(drv)] == nil {
				res.times[string(drv)] = map[string][]time.Duration{}
			}
			for i := range order {
				name := order[(i+r)%len(order)]
				if err := e.exec(ctx, `TRUNCATE `+schema+`.domains CASCADE`); err != nil {
					db.Close()
					return nil, err
				}
				tenant := uuid.New()
				m.sample()
				start := time.Now()
				switch name {
				case bCopy:
					err = copyAnchor(ctx, db, drv, tenant, names)
				case bUpsert:
					var got repo.BulkUpsertResult
					got, err = repo.New(db, repo.WithSchema(schema)).Domains.BulkUpsert(ctx, tenant, names)
					if err == nil && got.Inserted != n {
						err = fmt.Errorf("inserted %d of %d", got.Inserted, n)
					}
				case bToday:
					var rows []repo.UpsertedDomain
					err = db.SelectContext(ctx, &rows, bulkTodaySQL, tenant, pgArray(names))
				}
				el := time.Since(start)
				m.sample()
				if err != nil {
					db.Close()
					return nil, fmt.Errorf("%s %s: %w", drv, name, err)
				}
				res.times[string(drv)][name] = append(res.times[string(drv)][name], el)
				if name != bUpsert {
					continue
				}
				// Again, over the names now stored: nothing may be rewritten.
				start = time.Now()
				got, err := repo.New(db, repo.WithSchema(schema)).Domains.BulkUpsert(ctx, tenant, names)
				el = time.Since(start)
				if err == nil && got.Inserted != 0 {
					err = fmt.Errorf("inserted %d existing names", got.Inserted)
				}
				if err != nil {
					db.Close()
					return nil, fmt.Errorf("%s %s: %w", drv, bReWrite, err)
				}
				res.times[string(drv)][bReWrite] = append(res.times[string(drv)][bReWrite], el)
				// One transaction inserted every row (one xmin, updated_at =
				// created_at): a rewritten row has another xmin or a later
				// updated_at.
				changed, err := e.count(ctx, fmt.Sprintf(`SELECT count(*) FILTER (WHERE updated_at <> created_at)
					+ count(DISTINCT xmin::text) - 1 FROM %s.domains WHERE tenant_id = '%s'`, schema, tenant))
				if err != nil {
					db.Close()
					return nil, err
				}
				res.rewritten[string(drv)] += changed
			}
			db.Close()
			fmt.Fprintf(os.Stderr, "bulk round %d %s done\n", r+1, drv)
		}
	}
	return res, nil
}

// copyAnchor stores the rows with the driver's own COPY through the same
// pool: pgx's CopyFrom, lib/pq's COPY FROM STDIN in a transaction.
func copyAnchor(ctx context.Context, db *sqladapter.DB, drv driverconf.Driver, tenant uuid.UUID, names []string) error {
	table, cols := pgx.Identifier{schema, "domains"}, []string{"tenant_id", "domain"}
	if drv == driverconf.PGX {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			_, err := sqladapter.Unwrap(dc).(*stdlib.Conn).Conn().CopyFrom(ctx, table, cols,
				pgx.CopyFromSlice(len(names), func(i int) ([]any, error) { return []any{tenant, names[i]}, nil }))
			return err
		})
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	stmt, err := tx.PrepareContext(ctx, `COPY `+schema+`.domains (tenant_id, domain) FROM STDIN`)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := stmt.ExecContext(ctx, tenant.String(), n); err != nil {
			return err
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return err
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	return tx.Commit()
}

// pgArray writes ss as a text[] literal (the names need no quoting).
func pgArray(ss []string) string { return "{" + strings.Join(ss, ",") + "}" }
