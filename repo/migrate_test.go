package repo_test

import (
	"context"
	"errors"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
)

func TestMigrateRefusesTransactionPoolerWithoutDirectURL(t *testing.T) {
	t.Parallel()
	cfg := driverconf.Config{URL: "postgres://app@127.0.0.1:6543/app"} // port 6543: transaction pooler
	for _, f := range []func(context.Context, driverconf.Config, ...repo.Option) error{repo.Migrate, repo.MigrateDown} {
		if err := f(context.Background(), cfg); !errors.Is(err, repo.ErrNeedDirectURL) {
			t.Errorf("err = %v, want ErrNeedDirectURL", err)
		}
	}
}

// TestMigrateUpDown applies the migrations, checks the tables exist, rolls
// them back, checks they are gone, and applies them again — on both drivers.
func TestMigrateUpDown(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b *bundle) {
		tables := func() int {
			var n int
			err := b.db.GetContext(b.ctx, &n, `SELECT count(*) FROM information_schema.tables
				WHERE table_schema = $1 AND table_name IN ('profiles', 'domains', 'batches', 'jobs')`, b.schema)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := tables(); n != 4 {
			t.Fatalf("after Migrate: %d of 4 tables", n)
		}
		v, err := repo.MigrationVersion(b.ctx, b.cfg, repo.WithSchema(b.schema))
		if err != nil || v != 1 {
			t.Fatalf("MigrationVersion = %d, %v; want 1", v, err)
		}
		// Migrate is idempotent.
		if err := repo.Migrate(b.ctx, b.cfg, repo.WithSchema(b.schema)); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if err := repo.MigrateDown(b.ctx, b.cfg, repo.WithSchema(b.schema)); err != nil {
			t.Fatalf("MigrateDown: %v", err)
		}
		if n := tables(); n != 0 {
			t.Fatalf("after MigrateDown: %d tables left", n)
		}
		if v, err := repo.MigrationVersion(b.ctx, b.cfg, repo.WithSchema(b.schema)); err != nil || v != 0 {
			t.Fatalf("MigrationVersion after down = %d, %v; want 0", v, err)
		}
		if err := repo.Migrate(b.ctx, b.cfg, repo.WithSchema(b.schema)); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		if n := tables(); n != 4 {
			t.Fatalf("after Migrate again: %d of 4 tables", n)
		}
	})
}
