package repo

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/scrapersky/poolsafe/driverconf"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrNeedDirectURL is returned by the migration functions when the
// configuration points at a transaction pooler and has no DirectURL.
var ErrNeedDirectURL = errors.New("repo: migrations need a session, but URL is a transaction pooler and DirectURL is not set; " +
	"set DirectURL (DIRECT_URL) to a direct or session-mode URL (Prisma's directUrl; on Supabase, port 5432)")

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}

// Migrate applies every pending migration. Migrations need a session
// (DDL, an advisory lock against concurrent runs, search_path), so they run
// over cfg.DirectURL when cfg.URL is a transaction pooler, and over cfg.URL
// otherwise — with every field cfg sets explicitly: SSLMode, Driver,
// ApplicationName, Settings and the timeouts, so a StatementTimeout meant
// for the application's queries bounds each migration statement too (pass
// a copy without it for long migrations). WithSchema migrates another
// schema, creating it if needed; runs on one schema wait for each other,
// even while it does not exist yet.
func Migrate(ctx context.Context, cfg driverconf.Config, opts ...Option) error {
	return withProvider(ctx, cfg, opts, func(p *goose.Provider) error {
		_, err := p.Up(ctx)
		return err
	})
}

// MigrateDown rolls every migration back (the schema is emptied of this
// package's tables; the schema itself stays).
func MigrateDown(ctx context.Context, cfg driverconf.Config, opts ...Option) error {
	return withProvider(ctx, cfg, opts, func(p *goose.Provider) error {
		_, err := p.DownTo(ctx, 0)
		return err
	})
}

// MigrationVersion returns the schema's current migration version (0 when
// none is applied).
func MigrationVersion(ctx context.Context, cfg driverconf.Config, opts ...Option) (int64, error) {
	var v int64
	err := withProvider(ctx, cfg, opts, func(p *goose.Provider) error {
		var err error
		v, err = p.GetDBVersion(ctx)
		return err
	})
	return v, err
}

func withProvider(ctx context.Context, cfg driverconf.Config, opts []Option, fn func(*goose.Provider) error) error {
	o := options{schema: DefaultSchema}
	for _, f := range opts {
		f(&o)
	}
	mcfg, err := migrationConfig(cfg, o.schema)
	if err != nil {
		return err
	}
	h0, err := driverconf.Open(mcfg)
	if err != nil {
		return fmt.Errorf("repo: migrate: %w", err)
	}
	defer h0.Close()
	db := h0.DB.DB // goose takes a *sql.DB
	// One lock per schema: runs on the same schema wait for each other,
	// runs on different schemas do not.
	h := fnv.New64a()
	h.Write([]byte(o.schema))
	lockID := lock.DefaultLockID ^ int64(h.Sum64()>>1)
	if err := createSchema(ctx, db, o.schema, lockID); err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(lockID),
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return fmt.Errorf("repo: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations(),
		// Unqualified: the migration connection's search_path is the
		// schema alone, so this is the schema's own goose_db_version. (A
		// qualified name would not do: goose compares its schema part,
		// quotes included, with pg_tables.schemaname, so a schema whose
		// name needs quoting would never be found and the second run would
		// try to create the table again.)
		goose.WithTableName("goose_db_version"),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("repo: migrate: %w", err)
	}
	if err := fn(p); err != nil {
		return fmt.Errorf("repo: migrate schema %s: %w", o.schema, err)
	}
	return nil
}

// createSchema creates the schema unless it exists. Two runs doing so at
// once would both pass IF NOT EXISTS and one would fail on pg_namespace's
// unique index, so the statement runs in a transaction under a
// transaction-level advisory lock on the schema: the second run waits for
// the first to commit and then finds the schema. The lock is not goose's
// (lockID+1), so a run does not wait here for another one's migrations,
// only for its CREATE SCHEMA; goose's own lock serialises the rest.
func createSchema(ctx context.Context, db *sql.DB, schema string, lockID int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("repo: migrate: create schema %s: %w", schema, err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockID+1); err != nil {
		return fmt.Errorf("repo: migrate: create schema %s: lock: %w", schema, err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(schema)); err != nil {
		return fmt.Errorf("repo: migrate: create schema %s: %w", schema, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("repo: migrate: create schema %s: %w", schema, err)
	}
	return nil
}

// migrationConfig picks the session-capable URL and pins search_path to
// the target schema for the migration connection. Behind a transaction
// pooler the connection goes to cfg.DirectURL with every field cfg sets
// explicitly kept (see driverconf.Config.Direct): SSLMode, Driver,
// ApplicationName, the timeouts — an explicit 0, "disabled", included —
// and Settings. Only the pool size, the search path and the logger are the
// migration's own.
func migrationConfig(cfg driverconf.Config, schema string) (driverconf.Config, error) {
	if cfg.WithDefaults().PoolMode == driverconf.Transaction && cfg.DirectURL == "" {
		return driverconf.Config{}, ErrNeedDirectURL
	}
	m, err := cfg.Direct()
	if err != nil {
		return driverconf.Config{}, fmt.Errorf("repo: %w", err)
	}
	m.DirectURL = ""
	m.SearchPath = quoteIdent(schema)
	m.MaxOpenConns, m.MaxIdleConns = 2, 1
	m.Logger = nil
	return m, nil
}
