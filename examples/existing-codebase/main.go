// Command existing-codebase is an ordinary database/sql + sqlx program
// switched to poolsafe by changing one line:
//
//	db, err := sql.Open("postgres", dsn) // before: lib/pq (or "pgx")
//	db, err := sql.Open("poolsafe", dsn) // after: either driver, pooler-safe
//
// plus the import that registers the driver. Everything else — db.Prepare,
// sqlx Preparex, PrepareNamed and NamedStmt, NamedExec, sqlx.In with
// Rebind, a transaction with tx.Prepare — is unchanged, and runs
// concurrently from several goroutines through a transaction-mode pooler,
// where the drivers' defaults fail or return other clients' rows (see
// DESIGN.md's hazard table). Every answer is checked; the program prints
// the counts and exits non-zero if any answer was wrong or any call failed.
//
// The driver comes from the URL key driver=pgx|pq (default pgx); the pool
// mode from pool_mode=, pgbouncer=true or port 6543 in the URL. sql.Open
// takes nothing but the URL, so this example copies DB_DRIVER and
// DB_POOL_MODE into it when they are set. DIRECT_URL, when set, is used to
// create and drop the example's table (where a team's migrations would
// run); otherwise DATABASE_URL is.
//
// Against the repository's local stack (make stack-up), through PgBouncer
// in transaction mode with 2 server connections:
//
//	eval "$(bash scripts/pgstack.sh env)"
//	DATABASE_URL="$POOLSAFE_TEST_TX_URL" DIRECT_URL="$POOLSAFE_TEST_DIRECT_URL" \
//		DB_POOL_MODE=transaction DB_DRIVER=pq go run ./examples/existing-codebase
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	// The one new import. Importing driverconf registers the "poolsafe"
	// database/sql driver (a blank import is enough; this file also uses
	// RedactURL to print the URL). It replaces _ "github.com/lib/pq" or
	// _ "github.com/jackc/pgx/v5/stdlib": poolsafe brings both drivers.
	"github.com/scrapersky/poolsafe/driverconf"
)

const (
	workers    = 8  // goroutines
	iterations = 25 // rounds per goroutine
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	dsn, ddlDSN, err := urlsFromEnv()
	if err == nil {
		fmt.Printf("%d goroutines × %d rounds over sql.Open(%q, %s)\n\n",
			workers, iterations, "poolsafe", driverconf.RedactURL(dsn))
		err = run(ctx, dsn, ddlDSN)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "existing-codebase:", err)
		os.Exit(1)
	}
}

// urlsFromEnv returns DATABASE_URL, and the URL to run DDL over
// (DIRECT_URL, else DATABASE_URL), with DB_DRIVER and DB_POOL_MODE copied
// into them as the URL keys driver= and pool_mode=.
func urlsFromEnv() (dsn, ddlDSN string, err error) {
	dsn = os.Getenv("DATABASE_URL")
	if dsn == "" {
		return "", "", errors.New("DATABASE_URL is not set; set it to a postgres:// URL " +
			"(and DB_DRIVER=pgx|pq, DB_POOL_MODE=transaction for a pooler not on port 6543)")
	}
	if d := os.Getenv("DB_DRIVER"); d != "" {
		dsn = withKey(dsn, "driver", d)
	}
	if m := os.Getenv("DB_POOL_MODE"); m != "" {
		dsn = withKey(dsn, "pool_mode", m)
	}
	ddlDSN = dsn
	if direct := os.Getenv("DIRECT_URL"); direct != "" {
		ddlDSN = direct // a direct or session URL: its own pool mode, inferred
		if d := os.Getenv("DB_DRIVER"); d != "" {
			ddlDSN = withKey(ddlDSN, "driver", d)
		}
	}
	return dsn, ddlDSN, nil
}

// withKey sets key=value in a postgres:// URL or a key=value DSN.
func withKey(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn // sql.Open will report it, without the password
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

// answer is one row of the example's table.
type answer struct {
	Worker    int    `db:"worker"`
	N         int    `db:"n"`
	Product   int    `db:"product"`
	Label     string `db:"label"`
	Confirmed bool   `db:"confirmed"`
}

// tally counts checked answers per API. Every goroutine's SQL differs (the
// worker number is part of the text), so a statement that ran for another
// client — the failure a transaction pooler causes — gives a wrong answer
// here instead of passing unnoticed.
type tally struct {
	prepare, preparex, named, inserted, confirmed atomic.Int64
	wrong                                         atomic.Int64
}

func (t *tally) check(ok bool) {
	if !ok {
		t.wrong.Add(1)
	}
}

// run is the "existing program": only its sql.Open line names poolsafe.
func run(ctx context.Context, dsn, ddlDSN string) error {
	db, err := sql.Open("poolsafe", dsn) // was: sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// Pool sizing stays on the *sql.DB, as before: database/sql gives a
	// driver no way to size the pool, so sql.Open cannot take it from the
	// URL (connection_limit=, pool_max_conns= are removed and ignored).
	// driverconf.Open(cfg) applies Config.MaxOpenConns & co. for you.
	db.SetMaxOpenConns(workers)
	db.SetMaxIdleConns(workers)
	db.SetConnMaxLifetime(30 * time.Minute)
	dbx := sqlx.NewDb(db, "poolsafe") // was: sqlx.NewDb(db, "postgres"); bindvars stay $1, $2, …

	schema, drop, err := createTable(ctx, ddlDSN)
	if err != nil {
		return err
	}
	defer drop()

	var (
		t    tally
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for w := 1; w <= workers; w++ {
		wg.Go(func() { errs[w-1] = work(ctx, db, dbx, schema, w, &t) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Read everything back with sqlx.In, which expands the slice into
	// ?, ?, …, and Rebind, which turns those into this driver's $1, $2, ….
	ids := make([]int, workers)
	for i := range ids {
		ids[i] = i + 1
	}
	q, args, err := sqlx.In(`SELECT worker, n, product, label, confirmed FROM `+schema+`.answers
		WHERE worker IN (?) ORDER BY worker, n`, ids)
	if err != nil {
		return err
	}
	var rows []answer
	if err := dbx.SelectContext(ctx, &rows, dbx.Rebind(q), args...); err != nil {
		return fmt.Errorf("sqlx.In: %w", err)
	}
	readWrong := int64(workers*iterations - len(rows))
	for _, r := range rows {
		if r.Product != r.N*r.Worker || r.Label != label(r.Worker, r.N) || !r.Confirmed {
			readWrong++
		}
	}
	t.wrong.Add(readWrong)

	fmt.Printf("db.Prepare         %4d answers checked\n", t.prepare.Load())
	fmt.Printf("sqlx Preparex      %4d answers checked\n", t.preparex.Load())
	fmt.Printf("sqlx NamedStmt     %4d answers checked\n", t.named.Load())
	fmt.Printf("sqlx NamedExec     %4d rows inserted\n", t.inserted.Load())
	fmt.Printf("tx.Prepare         %4d rows confirmed in %d transactions\n", t.confirmed.Load(), workers)
	fmt.Printf("sqlx.In + Rebind   %4d rows read back, %d wrong or missing\n", len(rows), readWrong)
	fmt.Printf("\n%d wrong answers, 0 errors\n", t.wrong.Load())
	if n := t.wrong.Load(); n > 0 {
		return fmt.Errorf("%d wrong answers", n)
	}
	return nil
}

func label(worker, n int) string { return fmt.Sprintf("n%d@worker%d", n, worker) }

// work is one goroutine of the program: prepared statements of three
// kinds, prepared once and used for every round, then a transaction.
func work(ctx context.Context, db *sql.DB, dbx *sqlx.DB, schema string, w int, t *tally) error {
	// database/sql: Prepare once, run many times. Through a transaction
	// pooler poolsafe keeps the statement client-side; invalid SQL still
	// fails here, at Prepare.
	multiply, err := db.PrepareContext(ctx, fmt.Sprintf(`SELECT $1::int * %d`, w))
	if err != nil {
		return fmt.Errorf("worker %d: db.Prepare: %w", w, err)
	}
	defer multiply.Close()

	// sqlx: Preparex.
	labeler, err := dbx.PreparexContext(ctx, fmt.Sprintf(`SELECT 'n' || $1::int || '@worker%d'`, w))
	if err != nil {
		return fmt.Errorf("worker %d: Preparex: %w", w, err)
	}
	defer labeler.Close()

	// sqlx: PrepareNamed gives a NamedStmt. (CAST rather than ::, which
	// sqlx's named-parameter parser would take for a name.)
	adder, err := dbx.PrepareNamedContext(ctx, fmt.Sprintf(`SELECT CAST(:n AS int) + CAST(:base AS int) + %d`, w))
	if err != nil {
		return fmt.Errorf("worker %d: PrepareNamed: %w", w, err)
	}
	defer adder.Close()

	insert := `INSERT INTO ` + schema + `.answers (worker, n, product, label)
		VALUES (:worker, :n, :product, :label)`
	for n := 1; n <= iterations; n++ {
		var product int
		if err := multiply.QueryRowContext(ctx, n).Scan(&product); err != nil {
			return fmt.Errorf("worker %d: Stmt.QueryRow: %w", w, err)
		}
		t.prepare.Add(1)
		t.check(product == n*w)

		var lbl string
		if err := labeler.GetContext(ctx, &lbl, n); err != nil {
			return fmt.Errorf("worker %d: Stmtx.Get: %w", w, err)
		}
		t.preparex.Add(1)
		t.check(lbl == label(w, n))

		var sum int
		if err := adder.GetContext(ctx, &sum, map[string]any{"n": n, "base": 1000}); err != nil {
			return fmt.Errorf("worker %d: NamedStmt.Get: %w", w, err)
		}
		t.named.Add(1)
		t.check(sum == n+1000+w)

		// NamedExec binds struct fields by their db tags.
		res, err := dbx.NamedExecContext(ctx, insert, answer{Worker: w, N: n, Product: product, Label: lbl})
		if err != nil {
			return fmt.Errorf("worker %d: NamedExec: %w", w, err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return fmt.Errorf("worker %d: NamedExec affected %d rows (%v)", w, k, err)
		}
		t.inserted.Add(1)
	}

	// A transaction with a statement prepared on it: confirm this worker's
	// rows, all or nothing.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("worker %d: Begin: %w", w, err)
	}
	defer tx.Rollback() // a no-op after Commit
	confirm, err := tx.PrepareContext(ctx, `UPDATE `+schema+`.answers SET confirmed = true
		WHERE worker = $1 AND n = $2 AND product = $3 AND NOT confirmed`)
	if err != nil {
		return fmt.Errorf("worker %d: tx.Prepare: %w", w, err)
	}
	defer confirm.Close()
	for n := 1; n <= iterations; n++ {
		res, err := confirm.ExecContext(ctx, w, n, n*w)
		if err != nil {
			return fmt.Errorf("worker %d: tx Stmt.Exec: %w", w, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("worker %d: tx Stmt.Exec: %w", w, err)
		}
		t.check(k == 1)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("worker %d: Commit: %w", w, err)
	}
	t.confirmed.Add(iterations)
	return nil
}

// createTable creates the example's table in a schema of its own, over the
// DDL URL, and returns the schema and a function that drops it. Every
// statement names the schema: a transaction pooler keeps no search_path.
func createTable(ctx context.Context, ddlDSN string) (string, func(), error) {
	ddl, err := sql.Open("poolsafe", ddlDSN)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	schema := "existing_codebase_" + hex.EncodeToString(b)
	drop := func() {
		defer ddl.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := ddl.ExecContext(cctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
			fmt.Fprintln(os.Stderr, "existing-codebase: clean up:", err)
		}
	}
	for _, stmt := range []string{
		`CREATE SCHEMA ` + schema,
		`CREATE TABLE ` + schema + `.answers (
			worker    int NOT NULL,
			n         int NOT NULL,
			product   int NOT NULL,
			label     text NOT NULL,
			confirmed bool NOT NULL DEFAULT false,
			PRIMARY KEY (worker, n)
		)`,
	} {
		if _, err := ddl.ExecContext(ctx, stmt); err != nil {
			drop()
			return "", nil, fmt.Errorf("set up: %w", err)
		}
	}
	return schema, drop, nil
}
