package repo_test

// Migrate against the local stack, on both drivers, through the
// transaction pooler (the migrations themselves go over DirectURL).

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/repo"
)

// migrateCfg returns the configuration of the migration tests and drops
// schema when t ends. u is t's one testdb.Get: taking the shared lock again
// while holding it would queue behind a negative control waiting for the
// lock this test already holds.
func migrateCfg(t *testing.T, u testdb.URLs, drv driverconf.Driver, schema string) driverconf.Config {
	t.Helper()
	t.Cleanup(func() {
		d, err := driverconf.Open(driverconf.Config{URL: u.Direct, PoolMode: driverconf.Direct, MaxOpenConns: 1})
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer d.Close()
		if _, err := d.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	return driverconf.Config{URL: u.Tx, DirectURL: u.Direct, Driver: drv, PoolMode: driverconf.Transaction}
}

// migrateURLs is testdb.Get for a migration test.
func migrateURLs(t *testing.T) testdb.URLs {
	t.Helper()
	if testing.Short() {
		t.Skip("database test (-short)")
	}
	return testdb.Get(t)
}

// Migrate, MigrationVersion and MigrateDown run any number of times on a
// schema, whether its name needs quoting (capitals) or not, and they all
// use the one version table in that schema.
func TestMigrateRepeatedQuotedAndPlainSchema(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		u, ctx := migrateURLs(t), context.Background()
		suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
		for _, schema := range []string{"Tenant" + suffix, "tenant_" + suffix} {
			cfg := migrateCfg(t, u, drv, schema)
			opt := repo.WithSchema(schema)
			for i := range 2 {
				if err := repo.Migrate(ctx, cfg, opt); err != nil {
					t.Fatalf("%q: Migrate #%d: %v", schema, i+1, err)
				}
				v, err := repo.MigrationVersion(ctx, cfg, opt)
				if err != nil || v == 0 {
					t.Fatalf("%q: MigrationVersion after Migrate #%d = %d, %v; want the latest version", schema, i+1, v, err)
				}
			}
			// The version table is the schema's own goose_db_version.
			db, err := driverconf.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var tables int
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'goose_db_version'`, schema).Scan(&tables)
			db.Close()
			if err != nil || tables != 1 {
				t.Fatalf("%q: goose_db_version tables in the schema = %d, %v; want 1", schema, tables, err)
			}
			for i := range 2 {
				if err := repo.MigrateDown(ctx, cfg, opt); err != nil {
					t.Fatalf("%q: MigrateDown #%d: %v", schema, i+1, err)
				}
				if v, err := repo.MigrationVersion(ctx, cfg, opt); err != nil || v != 0 {
					t.Fatalf("%q: MigrationVersion after MigrateDown #%d = %d, %v; want 0", schema, i+1, v, err)
				}
			}
			if err := repo.Migrate(ctx, cfg, opt); err != nil {
				t.Fatalf("%q: Migrate after MigrateDown: %v", schema, err)
			}
		}
	})
}

// Concurrent runs on a schema that does not exist yet both succeed: one
// creates the schema, the other waits and finds it.
func TestMigrateConcurrentNewSchema(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		u, ctx := migrateURLs(t), context.Background()
		for round := range 8 {
			schema := "mig_conc_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			if round%2 == 1 {
				schema = "MigConc" + schema[len("mig_conc_"):]
			}
			cfg := migrateCfg(t, u, drv, schema)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = repo.Migrate(ctx, cfg, repo.WithSchema(schema))
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("round %d, %q: concurrent Migrate #%d of a new schema: %v", round, schema, i+1, err)
				}
			}
		}
	})
}
