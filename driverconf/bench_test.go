//go:build unix

package driverconf_test

// Benchmarks of the per-driver settings driverconf chooses, side by side
// with the raw drivers' defaults and native pgxpool in the same run.
//
//	eval "$(scripts/pgstack.sh env)"
//	go test ./driverconf -run '^$' -bench . -count 6 -benchtime 2000x > /tmp/bench-driverconf.txt
//	benchstat /tmp/bench-driverconf.txt
//
// Every client is one pool of benchConns connections. Clients named tx-*
// go through the transaction pooler (PgBouncer pool_size=2); all others
// connect to PostgreSQL directly. The raw drivers' defaults are measured in
// direct mode only: through a transaction pooler they fail or return wrong
// rows (see DESIGN.md). Every benchmark also reports cpu-ns/op, the
// client process's CPU time per query (getrusage, hence the unix build
// constraint); the server's CPU is not in it.

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

// benchConns is the pool size of every client, and the number of
// goroutines of the parallel benchmarks.
const benchConns = 4

// rowScanner is what *sql.Row and pgx.Row have in common.
type rowScanner interface{ Scan(dest ...any) error }

// queryRow runs a query expected to return one row.
type queryRow func(ctx context.Context, query string, args ...any) rowScanner

type benchClient struct {
	name string
	open func(b *testing.B, u testdb.URLs) queryRow
}

func benchClients() []benchClient {
	poolsafe := func(drv driverconf.Driver, mode driverconf.PoolMode, exec driverconf.PgxExecMode, tx bool) func(*testing.B, testdb.URLs) queryRow {
		return func(b *testing.B, u testdb.URLs) queryRow {
			url := u.Direct
			if tx {
				url = u.Tx
			}
			db, err := driverconf.Open(driverconf.Config{
				URL: url, Driver: drv, PoolMode: mode, PgxExecMode: exec,
				MaxOpenConns: benchConns, MaxIdleConns: benchConns,
			})
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			return sqlQueryRow(b, db.DB.DB)
		}
	}
	raw := func(driverName string) func(*testing.B, testdb.URLs) queryRow {
		return func(b *testing.B, u testdb.URLs) queryRow {
			db, err := sql.Open(driverName, u.Direct)
			if err != nil {
				b.Fatalf("sql.Open(%q): %v", driverName, err)
			}
			db.SetMaxOpenConns(benchConns)
			db.SetMaxIdleConns(benchConns)
			return sqlQueryRow(b, db)
		}
	}
	return []benchClient{
		{"raw-pgx-default", raw("pgx")},
		{"raw-pq-default", raw("postgres")},
		{"poolsafe-pgx-exec", poolsafe(driverconf.PGX, driverconf.Direct, driverconf.ExecModeExec, false)},
		{"poolsafe-pgx-cache_statement", poolsafe(driverconf.PGX, driverconf.Direct, driverconf.ExecModeCacheStatement, false)},
		{"poolsafe-pgx-simple_protocol", poolsafe(driverconf.PGX, driverconf.Direct, driverconf.ExecModeSimpleProtocol, false)},
		{"poolsafe-pq", poolsafe(driverconf.PQ, driverconf.Direct, "", false)},
		{"tx-poolsafe-pgx-exec", poolsafe(driverconf.PGX, driverconf.Transaction, driverconf.ExecModeExec, true)},
		{"tx-poolsafe-pq", poolsafe(driverconf.PQ, driverconf.Transaction, "", true)},
		{"pgxpool", pgxPool(false)},
		{"pgxpool-exec", pgxPool(true)},
	}
}

func sqlQueryRow(b *testing.B, db *sql.DB) queryRow {
	b.Cleanup(func() { db.Close() })
	testdb.Ping(b, db)
	return func(ctx context.Context, query string, args ...any) rowScanner {
		return db.QueryRowContext(ctx, query, args...)
	}
}

// pgxPool is native pgxpool on the direct URL: pgx's defaults
// (cache_statement), or exec mode with both caches off — the settings
// poolsafe-pgx-exec uses — without database/sql in between.
func pgxPool(exec bool) func(*testing.B, testdb.URLs) queryRow {
	return func(b *testing.B, u testdb.URLs) queryRow {
		cfg, err := pgxpool.ParseConfig(u.Direct)
		if err != nil {
			b.Fatalf("pgxpool.ParseConfig: %v", err)
		}
		cfg.MaxConns = benchConns
		if exec {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
			cfg.ConnConfig.StatementCacheCapacity = 0
			cfg.ConnConfig.DescriptionCacheCapacity = 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatalf("pgxpool.NewWithConfig: %v", err)
		}
		b.Cleanup(pool.Close)
		if err := pool.Ping(ctx); err != nil {
			b.Fatalf("database unreachable: %v", err)
		}
		return func(ctx context.Context, query string, args ...any) rowScanner {
			return pool.QueryRow(ctx, query, args...)
		}
	}
}

// benchShape is one query and the check of its answer for argument i.
type benchShape struct {
	name string
	run  func(ctx context.Context, q queryRow, i int64) error
}

var (
	wideTime = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	wideText = "poolsafe benchmark"
)

var benchShapes = []benchShape{
	{"int8", func(ctx context.Context, q queryRow, i int64) error {
		var n int64
		if err := q(ctx, "SELECT $1::int8 + 1", i).Scan(&n); err != nil {
			return err
		}
		if n != i+1 {
			return fmt.Errorf("got %d, want %d", n, i+1)
		}
		return nil
	}},
	{"5args-3cols", func(ctx context.Context, q queryRow, i int64) error {
		var (
			n  int64
			s  string
			ts time.Time
		)
		err := q(ctx, "SELECT $1::int8, $2::text, $3::timestamptz FROM (VALUES ($4::int8, $5::text)) v",
			i, wideText, wideTime, i, wideText).Scan(&n, &s, &ts)
		if err != nil {
			return err
		}
		if n != i || s != wideText || !ts.Equal(wideTime) {
			return fmt.Errorf("got (%d, %q, %s), want (%d, %q, %s)", n, s, ts, i, wideText, wideTime)
		}
		return nil
	}},
}

// warm opens every connection of the pool (and, in the cache modes,
// prepares the statement on each) before the clock starts.
func warm(b *testing.B, q queryRow, s benchShape) {
	b.Helper()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		once sync.Once
		werr error
	)
	for g := range benchConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := s.run(ctx, q, int64(g*10+i)); err != nil {
					once.Do(func() { werr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if werr != nil {
		b.Fatalf("warm-up: %v", werr)
	}
}

// eachClient runs bench for every shape on every client, warmed up, with
// allocations and cpu-ns/op reported.
func eachClient(b *testing.B, bench func(b *testing.B, ctx context.Context, q queryRow, s benchShape)) {
	u := testdb.Get(b)
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) {
			for _, c := range benchClients() {
				b.Run(c.name, func(b *testing.B) {
					q := c.open(b, u)
					warm(b, q, s)
					b.ReportAllocs()
					b.ResetTimer()
					cpu := testdb.CPUTime()
					bench(b, context.Background(), q, s)
					testdb.ReportCPU(b, cpu)
				})
			}
		})
	}
}

// BenchmarkQueryRow runs one query after another on one connection at a
// time: per-query latency, dominated by round trips.
func BenchmarkQueryRow(b *testing.B) {
	eachClient(b, func(b *testing.B, ctx context.Context, q queryRow, s benchShape) {
		var i int64
		for b.Loop() {
			i++
			if err := s.run(ctx, q, i); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQueryRowParallel runs benchConns goroutines (at least
// GOMAXPROCS) on the pool of benchConns connections: throughput, where CPU
// per query and pool contention count as well as round trips.
func BenchmarkQueryRowParallel(b *testing.B) {
	eachClient(b, func(b *testing.B, ctx context.Context, q queryRow, s benchShape) {
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		b.SetParallelism(max(1, benchConns/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			var i int64
			for pb.Next() {
				i++
				if err := s.run(ctx, q, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
