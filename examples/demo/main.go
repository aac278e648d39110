// Command demo opens the same database through the transaction pooler with
// both drivers and runs checked concurrent load: 32 goroutines, each with
// its own SQL text, so a statement that lands on another client's server
// connection shows up as a wrong answer. It then repeats the load with each
// raw driver's defaults, to show what poolsafe prevents.
//
// It reads DATABASE_URL (a transaction-pooler URL); make demo starts the
// local stack and sets it. It exits non-zero if poolsafe saw any error or
// wrong answer.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

const (
	goroutines = 32
	perG       = 200
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	base, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	if base.PoolMode == "" {
		base.PoolMode = driverconf.Transaction
	}
	fmt.Printf("database: %s (pool mode %s)\n", driverconf.RedactURL(base.URL), base.PoolMode)
	fmt.Printf("load: %d goroutines × %d queries, a distinct SQL text per goroutine, every answer checked\n\n", goroutines, perG)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "client\tqueries\terrors\twrong answers\tqueries/s\t")
	failed := false
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		cfg := base
		cfg.Driver = d
		cfg.MaxOpenConns, cfg.MaxIdleConns = 16, 16
		db, err := driverconf.OpenDB(cfg)
		if err != nil {
			return err
		}
		r, elapsed := load(ctx, db)
		db.Close()
		if r.Errors+r.Wrong > 0 {
			failed = true
		}
		fmt.Fprintf(w, "poolsafe %s\t%d\t%d\t%d\t%.0f\t\n", d, r.Queries, r.Errors, r.Wrong, float64(r.Queries)/elapsed.Seconds())
	}
	if base.PoolMode == driverconf.Transaction {
		// The raw drivers with their defaults on the same URL.
		for _, name := range []string{"pgx", "postgres"} {
			db, err := sql.Open(name, base.URL)
			if err != nil {
				return err
			}
			db.SetMaxOpenConns(16)
			db.SetMaxIdleConns(16)
			r, elapsed := load(ctx, db)
			db.Close()
			label := map[string]string{"pgx": "raw pgx defaults", "postgres": "raw lib/pq defaults"}[name]
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%.0f\t\n", label, r.Queries, r.Errors, r.Wrong, float64(r.Queries)/elapsed.Seconds())
		}
	}
	w.Flush()
	if failed {
		return fmt.Errorf("poolsafe saw errors or wrong answers")
	}
	fmt.Println("\npoolsafe: 0 errors, 0 wrong answers on both drivers.")
	return nil
}

func load(ctx context.Context, db *sql.DB) (testdb.Result, time.Duration) {
	start := time.Now()
	r := testdb.Load(ctx, goroutines, perG, testdb.DBQuery(db))
	return r, time.Since(start)
}
