package conformance

import (
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// repoTests runs the repositories — profiles, domains, jobs, batches —
// and their migrations on the target: every behaviour of the repo
// package, against a real database, through the URL under test.
// The tests are in repos_*.go, one file per repository.
func repoTests(t *testing.T, r *run) {
	migrateTests(t, r)
	profileTests(t, r)
	domainTests(t, r)
	jobTests(t, r)
	batchTests(t, r)
}

// repoEnv is what a repository test works with: the repositories over the
// target's handle (through the run's tap), in a freshly migrated schema,
// and a tenant of its own.
type repoEnv struct {
	*env
	repos  *repo.Repos
	tenant uuid.UUID
}

// repoEnv creates a schema, migrates it with the target's configuration
// (over DirectURL when the target is a transaction pooler, as
// [repo.Migrate] does) and opens the repositories on it.
func (r *run) repoEnv(t *testing.T) *repoEnv {
	t.Helper()
	e := r.newEnv(t)
	if err := repo.Migrate(e.ctx, e.raw, repo.WithSchema(e.schema)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return &repoEnv{env: e, repos: repo.New(e.db, repo.WithSchema(e.schema)), tenant: uuid.New()}
}

// size picks a heavy test's size: full on a target that swaps server
// connections, small elsewhere. Volume is what makes a statement, a Bind
// or an array parameter that crossed to another client's server
// connection show up, and only a transaction pooler (here with two server
// connections for everyone) swaps them; direct and session targets keep
// one server connection per client, so the same statements and the same
// assertions run there at a size that keeps the nine-target matrix
// within its time budget.
func (r *run) size(full, small int) int {
	if r.target.swapsConnections() {
		return full
	}
	return small
}

// otherDriver returns cfg opening the same URL and pool mode with the
// other driver, for tests that mix both drivers on the same rows.
func otherDriver(cfg driverconf.Config) driverconf.Config {
	if cfg.WithDefaults().Driver == driverconf.PGX {
		cfg.Driver, cfg.PgxExecMode = driverconf.PQ, ""
	} else {
		cfg.Driver, cfg.PgxExecMode = driverconf.PGX, driverconf.ExecModeExec
	}
	return cfg
}

// count returns the number of rows of table in the schema for the tenant.
func (e *repoEnv) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := e.db.GetContext(e.ctx, &n, "SELECT count(*) FROM "+e.schema+"."+table+" WHERE tenant_id = $1", e.tenant); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// exec runs a statement on the schema: "{s}" becomes its name. Tests use
// it to arrange states the API does not offer (time travel, tampered
// counters).
func (e *repoEnv) exec(t *testing.T, stmt string, args ...any) {
	t.Helper()
	if _, err := e.db.ExecContext(e.ctx, strings.ReplaceAll(stmt, "{s}", e.schema), args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// dbNow is the database's clock.
func (e *repoEnv) dbNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	if err := e.db.GetContext(e.ctx, &now, "SELECT now()"); err != nil {
		t.Fatal(err)
	}
	return now
}

// migrateTests: the migrations apply, report their version, roll back and
// apply again with the target's configuration.
func migrateTests(t *testing.T, r *run) {
	r.test(t, "Migrate/UpDown", func(t *testing.T) {
		e := r.repoEnv(t)
		cfg := e.raw
		tables := func() int {
			var n int
			err := e.db.GetContext(e.ctx, &n, `SELECT count(*) FROM information_schema.tables
				WHERE table_schema = $1 AND table_name IN ('profiles', 'domains', 'batches', 'jobs')`, e.schema)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := tables(); n != 4 {
			t.Fatalf("after Migrate: %d of 4 tables", n)
		}
		latest := latestMigration(t)
		v, err := repo.MigrationVersion(e.ctx, cfg, repo.WithSchema(e.schema))
		if err != nil || v != latest {
			t.Fatalf("MigrationVersion = %d, %v; want %d", v, err, latest)
		}
		// Migrate is idempotent.
		if err := repo.Migrate(e.ctx, cfg, repo.WithSchema(e.schema)); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if err := repo.MigrateDown(e.ctx, cfg, repo.WithSchema(e.schema)); err != nil {
			t.Fatalf("MigrateDown: %v", err)
		}
		if n := tables(); n != 0 {
			t.Fatalf("after MigrateDown: %d tables left", n)
		}
		if v, err := repo.MigrationVersion(e.ctx, cfg, repo.WithSchema(e.schema)); err != nil || v != 0 {
			t.Fatalf("MigrationVersion after down = %d, %v; want 0", v, err)
		}
		if err := repo.Migrate(e.ctx, cfg, repo.WithSchema(e.schema)); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		if n := tables(); n != 4 {
			t.Fatalf("after Migrate again: %d of 4 tables", n)
		}
	})
}

// latestMigration is the version of the newest embedded migration file
// ("00002_….sql" is version 2).
func latestMigration(t *testing.T) int64 {
	t.Helper()
	entries, err := fs.ReadDir(repo.Migrations(), ".")
	if err != nil {
		t.Fatal(err)
	}
	var latest int64
	for _, e := range entries {
		prefix, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil {
			t.Fatalf("migration %s: %v", e.Name(), err)
		}
		latest = max(latest, v)
	}
	if latest == 0 {
		t.Fatal("no migrations embedded")
	}
	return latest
}

// sameJSONValue reports whether two JSON documents hold the same value
// (jsonb does not keep spacing or key order).
func sameJSONValue(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// whileInFlight runs first in a transaction and, while it is uncommitted —
// the state of a statement still running on the server after its
// connection broke — starts repeat on another connection. repeat must
// still be waiting 300 ms later; then the transaction commits (or rolls
// back), and whileInFlight returns repeat's error.
func (e *repoEnv) whileInFlight(t *testing.T, commit bool, first func(*sqladapter.Tx) error, repeat func() error) error {
	t.Helper()
	errRollback := errors.New("roll back")
	repeated := make(chan error, 1)
	err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
		if err := first(tx); err != nil {
			return err
		}
		go func() { repeated <- repeat() }()
		select {
		case err := <-repeated:
			t.Errorf("the repeat returned (%v) while the first attempt was uncommitted", err)
			repeated <- err
		case <-time.After(300 * time.Millisecond):
		}
		if commit {
			return nil
		}
		return errRollback
	})
	if commit && err != nil || !commit && !errors.Is(err, errRollback) {
		t.Fatalf("InTx (commit %v): %v", commit, err)
	}
	return <-repeated
}
