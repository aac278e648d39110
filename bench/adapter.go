package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the raw pgx driver
	_ "github.com/lib/pq"              // the raw lib/pq driver

	"github.com/scrapersky/poolsafe/driverconf"
)

// The adapter's shapes: one int8, and 100 rows of int8, text and timestamptz.
const (
	shapeInt8 = "select $1::int8"
	shapeRows = "100 rows: int8, text, timestamptz"
)

var shapeSQL = map[string]string{
	shapeInt8: `SELECT $1::int8`,
	shapeRows: `SELECT g::int8, 'name-' || g, now() - g * interval '1 minute' FROM generate_series(1, 100 + $1::int8 * 0) g`,
}

// adapterRun is one measurement: CPU time and allocations per query.
type adapterRun struct{ cpu, allocs float64 }

type adapterResult struct {
	queries map[string]int                     // shape → queries per measurement
	runs    map[string]map[string][]adapterRun // "driver shape" → client ("raw", "poolsafe") → per round
}

// measureAdapter compares the raw driver, configured as driverconf
// configures it for a direct connection, with driverconf.Open's handle on
// the same connection settings: the process's CPU time and allocations per
// query, interleaved.
func measureAdapter(ctx context.Context, e *env, o options, m *machine) (*adapterResult, error) {
	res := &adapterResult{queries: map[string]int{shapeInt8: 10000, shapeRows: 2000}, runs: map[string]map[string][]adapterRun{}}
	if o.smoke {
		res.queries = map[string]int{shapeInt8: 20, shapeRows: 5}
	}
	sep := "?"
	if strings.Contains(e.directURL, "?") {
		sep = "&"
	}
	open := map[string]func() (*sql.DB, error){
		"pgx raw": func() (*sql.DB, error) {
			return sql.Open("pgx", e.directURL+sep+"default_query_exec_mode=exec&statement_cache_capacity=0&description_cache_capacity=0")
		},
		"pq raw": func() (*sql.DB, error) { return sql.Open("postgres", e.directURL+sep+"binary_parameters=yes") },
		"pgx poolsafe": func() (*sql.DB, error) {
			db, err := driverconf.Open(driverconf.Config{URL: e.directURL, Driver: driverconf.PGX, PoolMode: driverconf.Direct, MaxOpenConns: 1})
			if err != nil {
				return nil, err
			}
			return db.DB.DB, nil
		},
		"pq poolsafe": func() (*sql.DB, error) {
			db, err := driverconf.Open(driverconf.Config{URL: e.directURL, Driver: driverconf.PQ, PoolMode: driverconf.Direct, MaxOpenConns: 1})
			if err != nil {
				return nil, err
			}
			return db.DB.DB, nil
		},
	}
	dbs := map[string]*sql.DB{}
	for name, f := range open {
		db, err := f()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		defer db.Close()
		if err := db.PingContext(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		dbs[name] = db
	}
	for r := range o.rounds {
		for _, drv := range []string{"pgx", "pq"} {
			for _, shape := range []string{shapeInt8, shapeRows} {
				key := drv + " " + shape
				if res.runs[key] == nil {
					res.runs[key] = map[string][]adapterRun{}
				}
				clients := []string{"raw", "poolsafe"}
				if r%2 == 1 {
					clients = []string{"poolsafe", "raw"}
				}
				for _, client := range clients {
					m.sample()
					run, err := adapterLoop(ctx, dbs[drv+" "+client], shape, res.queries[shape])
					if err != nil {
						return nil, fmt.Errorf("%s %s: %w", key, client, err)
					}
					res.runs[key][client] = append(res.runs[key][client], run)
				}
			}
		}
		fmt.Fprintf(os.Stderr, "adapter round %d done\n", r+1)
	}
	return res, nil
}

// adapterLoop runs n queries of shape, scanning every column, and returns
// the CPU time and allocations per query.
func adapterLoop(ctx context.Context, db *sql.DB, shape string, n int) (adapterRun, error) {
	q := shapeSQL[shape]
	var (
		id   int64
		name string
		at   time.Time
	)
	one := func(i int) error {
		rows, err := db.QueryContext(ctx, q, int64(i))
		if err != nil {
			return err
		}
		defer rows.Close()
		got := 0
		for rows.Next() {
			if shape == shapeInt8 {
				err = rows.Scan(&id)
			} else {
				err = rows.Scan(&id, &name, &at)
			}
			if err != nil {
				return err
			}
			got++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if want := map[string]int{shapeInt8: 1, shapeRows: 100}[shape]; got != want {
			return fmt.Errorf("%d rows, want %d", got, want)
		}
		return nil
	}
	for i := range 10 { // warm up
		if err := one(i); err != nil {
			return adapterRun{}, err
		}
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := selfCPU()
	for i := range n {
		if err := one(i); err != nil {
			return adapterRun{}, err
		}
	}
	cpu := selfCPU() - cpu0
	runtime.ReadMemStats(&ms1)
	return adapterRun{cpu: float64(cpu.Nanoseconds()) / 1000 / float64(n), allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(n)}, nil
}
