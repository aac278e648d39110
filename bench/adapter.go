package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
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

// adapterRun is one measurement: CPU time and allocations per query, and
// how many queries the CPU time is of.
type adapterRun struct {
	cpu, allocs float64
	queries     int
}

type adapterResult struct {
	queries map[string]int                     // shape → queries per chunk × the least number of chunks
	runs    map[string]map[string][]adapterRun // "driver shape" → client (adapterClientNames) → per round
	minTime time.Duration                      // the least time of a measurement (all clients)
}

// measureAdapter compares the raw driver, configured as driverconf
// configures it for a direct connection, with driverconf.Open's handle on
// the same connection settings: the process's CPU time and allocations per
// query, interleaved, with a second handle of the raw driver as the
// control.
func measureAdapter(ctx context.Context, e *env, o options, m *machine) (*adapterResult, error) {
	res := &adapterResult{queries: map[string]int{shapeInt8: 10000, shapeRows: 2000}, runs: map[string]map[string][]adapterRun{}, minTime: o.runTime}
	if o.smoke {
		res.queries = map[string]int{shapeInt8: 50, shapeRows: 50}
		res.minTime = 0
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
	// The control: a second handle of the raw driver, measured as the
	// others are. Its ratio to the first is what the measurement gives two
	// identical clients — the precision of the other ratios.
	for _, drv := range []string{"pgx", "pq"} {
		open[drv+" control"] = open[drv+" raw"]
	}
	dbs := map[string]*sql.DB{}
	for name, f := range open {
		db, err := f()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// The same database/sql pool settings on every handle — those
		// driverconf.Open gives its own — so that the ratio compares the
		// drivers, not database/sql's connection-lifetime bookkeeping
		// (with a lifetime, every checkout reads the clock).
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(driverconf.DefaultConnMaxLifetime)
		db.SetConnMaxIdleTime(driverconf.DefaultConnMaxIdleTime)
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
				m.sample()
				clients := [3]*sql.DB{dbs[drv+" raw"], dbs[drv+" control"], dbs[drv+" poolsafe"]}
				got, err := adapterClients(ctx, clients, drv, shape, res.queries[shape], r, res.minTime)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", key, err)
				}
				for j, name := range adapterClientNames {
					res.runs[key][name] = append(res.runs[key][name], got[j])
				}
			}
		}
		fmt.Fprintf(os.Stderr, "adapter round %d done\n", r+1)
	}
	return res, nil
}

// The clients of the adapter goal, in the order adapterClients measures
// them: the raw driver, a second handle of the raw driver (the control: a
// ratio the measurement itself gives two identical clients), and poolsafe.
var adapterClientNames = [3]string{"raw", "control", "poolsafe"}

// adapterOrders are the six orders of the three clients.
var adapterOrders = [6][3]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}, {1, 0, 2}, {0, 2, 1}}

// adapterClients measures the raw driver, the control and poolsafe on
// queries of shape: CPU time in alternating chunks of n/50 queries per
// client (load drifts over seconds; alternating cancels it), each client
// taking each position in turn, at least 50 chunks each and, past that,
// more until the measurement has taken minTime (-benchtime: the CPU time
// of a chunk is noisy on a shared machine, and more chunks average it
// out); allocations in one pass each. The chunks are labelled for a
// -cpuprofile: go tool pprof -tagfocus 'run=pq poolsafe 100 rows.*'.
func adapterClients(ctx context.Context, dbs [3]*sql.DB, drv, shape string, n int, shift int, minTime time.Duration) ([3]adapterRun, error) {
	const minChunks = 50
	per := max(n/minChunks, 1)
	var cpu [3]time.Duration
	start := time.Now()
	chunks := 0
	var out [3]adapterRun
	// The order of the clients goes through all six permutations, a
	// multiple of six chunks each: every client takes every position, and
	// follows every other client, equally often. Work a chunk leaves
	// behind (the driver's goroutines ending, GC) is charged to the next
	// one, so no client may always follow the same one: with a fixed
	// cyclic order, lib/pq's second raw handle cost 1.00–1.06× its first
	// over five runs, as much as poolsafe did (0.99–1.04× since).
	for ; chunks < minChunks || chunks%6 != 0 || time.Since(start) < minTime; chunks++ {
		for _, j := range adapterOrders[(chunks+shift)%6] {
			c0 := selfCPU()
			var err error
			pprof.Do(ctx, pprof.Labels("run", drv+" "+adapterClientNames[j]+" "+shape), func(ctx context.Context) {
				err = adapterQueries(ctx, dbs[j], shape, per)
			})
			if err != nil {
				return out, err
			}
			cpu[j] += selfCPU() - c0
		}
	}
	for j, db := range dbs {
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		if err := adapterQueries(ctx, db, shape, per); err != nil {
			return out, err
		}
		runtime.ReadMemStats(&ms1)
		out[j] = adapterRun{
			cpu:     float64(cpu[j].Nanoseconds()) / 1000 / float64(chunks*per),
			allocs:  float64(ms1.Mallocs-ms0.Mallocs) / float64(per),
			queries: chunks * per,
		}
	}
	return out, nil
}

// adapterQueries runs n queries of shape, scanning every column.
func adapterQueries(ctx context.Context, db *sql.DB, shape string, n int) error {
	q := shapeSQL[shape]
	var (
		id   int64
		name string
		at   time.Time
	)
	for i := range n {
		rows, err := db.QueryContext(ctx, q, int64(i))
		if err != nil {
			return err
		}
		got := 0
		for rows.Next() {
			if shape == shapeInt8 {
				err = rows.Scan(&id)
			} else {
				err = rows.Scan(&id, &name, &at)
			}
			if err != nil {
				rows.Close()
				return err
			}
			got++
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if want := map[string]int{shapeInt8: 1, shapeRows: 100}[shape]; got != want {
			return fmt.Errorf("%d rows, want %d", got, want)
		}
	}
	return nil
}
