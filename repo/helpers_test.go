package repo_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// bundle is what an integration test works with: repositories over a
// handle through the transaction pooler, in a freshly migrated schema.
type bundle struct {
	db     *sqladapter.DB
	repos  *repo.Repos
	schema string
	cfg    driverconf.Config
	tenant uuid.UUID
	ctx    context.Context
}

// drivers are the targets every integration test runs on: both drivers
// through the transaction pooler.
var drivers = []driverconf.Driver{driverconf.PGX, driverconf.PQ}

// forEachDriver runs fn as a parallel subtest per driver, each with its
// own migrated schema and tenant.
func forEachDriver(t *testing.T, fn func(t *testing.T, b *bundle)) {
	t.Helper()
	for _, d := range drivers {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, d))
		})
	}
}

// setup migrates a fresh schema over the direct URL and opens the
// repositories through the transaction pooler.
func setup(t *testing.T, d driverconf.Driver) *bundle {
	t.Helper()
	u := testdb.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	schema := "repo_" + hex.EncodeToString(rb[:])
	cfg := driverconf.Config{
		URL: u.Tx, DirectURL: u.Direct, Driver: d, PoolMode: driverconf.Transaction,
		MaxOpenConns: 8, MaxIdleConns: 8,
	}
	if err := repo.Migrate(ctx, cfg, repo.WithSchema(schema)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Cleanup(func() { dropSchema(t, u.Direct, schema) })
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return &bundle{db: db, repos: repo.New(db, repo.WithSchema(schema)), schema: schema, cfg: cfg, tenant: uuid.New(), ctx: ctx}
}

func dropSchema(t *testing.T, directURL, schema string) {
	db, err := sql.Open("pgx", directURL)
	if err != nil {
		t.Errorf("drop schema: %v", err)
		return
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// count returns the number of rows of table in the bundle's schema for its tenant.
func (b *bundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := b.db.GetContext(b.ctx, &n, "SELECT count(*) FROM "+b.schema+"."+table+" WHERE tenant_id = $1", b.tenant); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
