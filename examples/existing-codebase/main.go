// Command existing-codebase is an ordinary database/sql + sqlx program
// switched to poolsafe by one line and one import:
//
//	db, err := sql.Open("postgres", dsn) // before: lib/pq (or "pgx")
//	db, err := sql.Open("poolsafe", dsn) // after: either driver, safe through a transaction pooler
//
// Everything else — db.Prepare, sqlx Preparex, PrepareNamed and NamedStmt,
// NamedExec, sqlx.In with Rebind, tx.Prepare — is unchanged, and runs from 8
// goroutines at once, each with its own SQL text and every answer checked:
// through a transaction pooler, the drivers' defaults fail or return other
// clients' rows here. It exits non-zero on any error or wrong answer.
//
// sql.Open takes nothing but the URL, so the driver (driver=pgx|pq, pgx by
// default) and the pool mode (pool_mode=transaction, or inferred from
// pgbouncer=true or port 6543) are URL keys. On the repository's local stack:
//
//	eval "$(bash scripts/pgstack.sh env)"
//	DATABASE_URL="$POOLSAFE_TEST_TX_URL&pool_mode=transaction&driver=pq" go run ./examples/existing-codebase
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	// The one new import: it registers the "poolsafe" driver, and replaces
	// _ "github.com/lib/pq" or _ "github.com/jackc/pgx/v5/stdlib".
	_ "github.com/scrapersky/poolsafe/driverconf"
)

const (
	workers = 8  // goroutines
	rounds  = 25 // per goroutine
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Getenv("DATABASE_URL")); err != nil {
		fmt.Fprintln(os.Stderr, "existing-codebase:", err)
		os.Exit(1)
	}
}

// answer is one row of the example's table.
type answer struct {
	Worker    int    `db:"worker"`
	N         int    `db:"n"`
	Product   int    `db:"product"`
	Label     string `db:"label"`
	Confirmed bool   `db:"confirmed"`
}

func label(worker, n int) string { return fmt.Sprintf("n%d@worker%d", n, worker) }

// checked and wrong count the answers. Every goroutine's SQL differs (its
// number is part of the text), so a statement that ran for another client
// gives a wrong answer instead of passing unnoticed.
var checked, wrong atomic.Int64

func check(ok bool) {
	checked.Add(1)
	if !ok {
		wrong.Add(1)
	}
}

// run is the "existing program": only its sql.Open line names poolsafe.
func run(ctx context.Context, dsn string) error {
	if dsn == "" {
		return errors.New("set DATABASE_URL to a postgres:// URL (with pool_mode=transaction for a pooler not on port 6543)")
	}
	db, err := sql.Open("poolsafe", dsn) // was: sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(workers)       // pool sizing stays on the *sql.DB, as before
	dbx := sqlx.NewDb(db, "poolsafe") // was: sqlx.NewDb(db, "postgres"); bindvars stay $1, $2, …

	// A schema of its own, named in every statement: a transaction pooler
	// keeps no search_path.
	schema := fmt.Sprintf("existing_codebase_%d", os.Getpid())
	defer db.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) //nolint:errcheck // clean-up
	for _, ddl := range []string{`CREATE SCHEMA ` + schema, `CREATE TABLE ` + schema + `.answers (worker int, n int,
		product int NOT NULL, label text NOT NULL, confirmed bool NOT NULL DEFAULT false, PRIMARY KEY (worker, n))`} {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			return err
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 1; w <= workers; w++ {
		wg.Go(func() { errs[w-1] = work(ctx, db, dbx, schema, w) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Read everything back with sqlx.In, which expands the slice into
	// ?, ?, …, and Rebind, which turns those into $1, $2, ….
	ids := make([]int, workers)
	for i := range ids {
		ids[i] = i + 1
	}
	q, args, err := sqlx.In(`SELECT * FROM `+schema+`.answers WHERE worker IN (?) ORDER BY worker, n`, ids)
	if err != nil {
		return err
	}
	var rows []answer
	if err := dbx.SelectContext(ctx, &rows, dbx.Rebind(q), args...); err != nil {
		return fmt.Errorf("sqlx.In: %w", err)
	}
	if len(rows) != workers*rounds {
		wrong.Add(1)
	}
	for _, r := range rows {
		check(r.Product == r.N*r.Worker && r.Label == label(r.Worker, r.N) && r.Confirmed)
	}
	fmt.Printf("%d goroutines × %d rounds of db.Prepare, Preparex, NamedStmt, NamedExec, tx.Prepare and sqlx.In: "+
		"%d answers checked, %d wrong\n", workers, rounds, checked.Load(), wrong.Load())
	if wrong.Load() > 0 {
		return errors.New("wrong answers")
	}
	return nil
}

// work is one goroutine: three kinds of prepared statement, prepared once
// and used every round, then a transaction with a statement prepared on it.
func work(ctx context.Context, db *sql.DB, dbx *sqlx.DB, schema string, w int) error {
	// database/sql: through a transaction pooler poolsafe keeps the
	// statement client-side; invalid SQL still fails here, at Prepare.
	multiply, err := db.PrepareContext(ctx, fmt.Sprintf(`SELECT $1::int * %d`, w))
	if err != nil {
		return fmt.Errorf("worker %d: db.Prepare: %w", w, err)
	}
	defer multiply.Close()
	labeler, err := dbx.PreparexContext(ctx, fmt.Sprintf(`SELECT 'n' || $1::int || '@worker%d'`, w))
	if err != nil {
		return fmt.Errorf("worker %d: Preparex: %w", w, err)
	}
	defer labeler.Close()
	// CAST rather than ::, which sqlx's named-parameter parser would take for a name.
	adder, err := dbx.PrepareNamedContext(ctx, fmt.Sprintf(`SELECT CAST(:n AS int) + CAST(:base AS int) + %d`, w))
	if err != nil {
		return fmt.Errorf("worker %d: PrepareNamed: %w", w, err)
	}
	defer adder.Close()

	insert := `INSERT INTO ` + schema + `.answers (worker, n, product, label) VALUES (:worker, :n, :product, :label)`
	for n := 1; n <= rounds; n++ {
		var product, sum int
		var lbl string
		if err := multiply.QueryRowContext(ctx, n).Scan(&product); err != nil {
			return fmt.Errorf("worker %d: Stmt.QueryRow: %w", w, err)
		}
		if err := labeler.GetContext(ctx, &lbl, n); err != nil {
			return fmt.Errorf("worker %d: Stmtx.Get: %w", w, err)
		}
		if err := adder.GetContext(ctx, &sum, map[string]any{"n": n, "base": 1000}); err != nil {
			return fmt.Errorf("worker %d: NamedStmt.Get: %w", w, err)
		}
		check(product == n*w)
		check(lbl == label(w, n))
		check(sum == n+1000+w)
		if _, err := dbx.NamedExecContext(ctx, insert, answer{Worker: w, N: n, Product: product, Label: lbl}); err != nil {
			return fmt.Errorf("worker %d: NamedExec: %w", w, err)
		}
	}

	// A transaction with a statement prepared on it: confirm this worker's
	// rows, all or nothing.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("worker %d: Begin: %w", w, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	confirm, err := tx.PrepareContext(ctx, `UPDATE `+schema+`.answers SET confirmed = true
		WHERE worker = $1 AND n = $2 AND product = $3 AND NOT confirmed`)
	if err != nil {
		return fmt.Errorf("worker %d: tx.Prepare: %w", w, err)
	}
	defer confirm.Close()
	for n := 1; n <= rounds; n++ {
		res, err := confirm.ExecContext(ctx, w, n, n*w)
		if err != nil {
			return fmt.Errorf("worker %d: tx Stmt.Exec: %w", w, err)
		}
		k, err := res.RowsAffected()
		check(err == nil && k == 1)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("worker %d: Commit: %w", w, err)
	}
	return nil
}
