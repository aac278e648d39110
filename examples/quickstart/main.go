// Command quickstart is the shortest path from environment variables to
// working repositories: driverconf.FromEnv reads the configuration,
// driverconf.Open opens a pooler-safe handle, repo.Migrate brings the schema
// up to date, and the Profiles repository creates and lists two profiles.
//
// It reads:
//
//	DATABASE_URL  the URL the application uses (required); may be a
//	              transaction pooler such as PgBouncer or Supabase's port 6543
//	DIRECT_URL    a direct or session-mode URL to the same database, needed
//	              for migrations when DATABASE_URL is a transaction pooler
//	DB_DRIVER     pgx (default) or pq
//	DB_POOL_MODE  direct, session or transaction (inferred from the URL
//	              when unset: pgbouncer=true, pool_mode=…, port 6543)
//
// Run it against the repository's local stack (make stack-up):
//
//	eval "$(bash scripts/pgstack.sh env)"
//	DATABASE_URL="$POOLSAFE_TEST_TX_URL" DIRECT_URL="$POOLSAFE_TEST_DIRECT_URL" \
//		DB_POOL_MODE=transaction DB_DRIVER=pq go run ./examples/quickstart
//
// Each run works in a fresh random tenant, so runs never see each other's
// rows, and deletes the two profiles it created before it exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	// 1. Configuration: DATABASE_URL plus any DB_* variable. The error names
	// the variable or URL key at fault and never contains the password.
	cfg, err := driverconf.FromEnv()
	if err != nil {
		if os.Getenv(driverconf.EnvDatabaseURL) == "" {
			return fmt.Errorf("%w\n\nfor example:\n"+
				"  DATABASE_URL=postgres://app:secret@127.0.0.1:5432/app go run ./examples/quickstart\n"+
				"and, when DATABASE_URL is a transaction pooler, DIRECT_URL=<direct or session URL> for the migrations", err)
		}
		return err
	}
	// WithDefaults fills in what FromEnv left to the library, such as the
	// pool mode inferred from the URL; Notes says what happened to URL keys
	// the drivers would not have understood.
	eff := cfg.WithDefaults()
	fmt.Printf("database %s, driver %s, pool mode %s\n", driverconf.RedactURL(eff.URL), eff.Driver, eff.PoolMode)
	for _, n := range cfg.Notes() {
		fmt.Println("  note:", n)
	}

	// 2. A *sqladapter.DB (it embeds *sqlx.DB). Open does no network I/O;
	// the first query connects.
	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	// 3. Migrations need a session (DDL, an advisory lock), so behind a
	// transaction pooler they run over cfg.DirectURL; without one they fail
	// with repo.ErrNeedDirectURL, which says what to set.
	if err := repo.Migrate(ctx, cfg); err != nil {
		return err
	}
	v, err := repo.MigrationVersion(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("schema %s at migration version %d\n\n", repo.DefaultSchema, v)

	// 4. Repositories take any querier: the DB here, a *sqladapter.Tx
	// inside db.InTx, or sqlmock in tests.
	profiles := repo.New(db).Profiles
	tenant := uuid.New() // a fresh tenant per run
	var created []repo.Profile
	defer func() {
		// Leave the database as we found it (apart from the migrations).
		// The request context may be over by now, so use a fresh one.
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		for _, p := range created {
			if err := profiles.Delete(cctx, tenant, p.ID); err != nil {
				fmt.Fprintln(os.Stderr, "quickstart: clean up:", err)
			}
		}
	}()
	for _, in := range []repo.NewProfile{
		{Email: "ada@example.com", DisplayName: "Ada Lovelace", Attributes: []byte(`{"plan": "pro"}`)},
		{Email: "grace@example.com", DisplayName: "Grace Hopper"},
	} {
		p, err := profiles.Create(ctx, tenant, in)
		if err != nil {
			return err
		}
		created = append(created, p)
	}

	// The same email again, in another case, is a conflict on either driver.
	// errors.Is works on the classified error whichever driver produced it.
	_, err = profiles.Create(ctx, tenant, repo.NewProfile{Email: "ADA@example.com"})
	fmt.Printf("creating ADA@example.com again: ErrConflict=%t\n  %v\n\n", errors.Is(err, sqladapter.ErrConflict), err)
	if !errors.Is(err, sqladapter.ErrConflict) {
		return fmt.Errorf("a duplicate email was not reported as a conflict: %v", err)
	}

	page, err := profiles.List(ctx, tenant, repo.Page{Limit: 10})
	if err != nil {
		return err
	}
	fmt.Printf("tenant %s has %d profiles:\n", tenant, len(page.Items))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  ID\tEMAIL\tNAME\tATTRIBUTES\tCREATED (UTC)")
	for _, p := range page.Items {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", p.ID, p.Email, p.DisplayName, p.Attributes,
			p.CreatedAt.Format(time.DateTime+".000"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(page.Items) != len(created) {
		return fmt.Errorf("listed %d profiles, created %d", len(page.Items), len(created))
	}
	return nil
}
