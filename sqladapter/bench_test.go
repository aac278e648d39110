//go:build unix

package sqladapter_test

// Benchmarks of the connector wrapper's cost: the raw driver with the same
// driver settings driverconf uses, against driverconf.OpenDB (whose
// connections go through sqladapter.NewConnector), in the same run.
//
//	eval "$(scripts/pgstack.sh env)"
//	go test ./sqladapter -run '^$' -bench . -count 6 -benchtime 2000x > /tmp/bench-sqladapter.txt
//	benchstat /tmp/bench-sqladapter.txt

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // raw pgx, the baseline
	_ "github.com/lib/pq"              // raw lib/pq, the baseline

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

// benchConns is the pool size of every handle.
const benchConns = 4

// benchClient opens one *sql.DB.
type benchClient struct {
	name string
	open func(b *testing.B, u testdb.URLs) *sql.DB
}

// withQuery returns rawURL with the given query keys added.
func withQuery(b *testing.B, rawURL string, kv ...string) string {
	b.Helper()
	pu, err := url.Parse(rawURL)
	if err != nil {
		b.Fatalf("parse test URL: %v", err)
	}
	q := pu.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	pu.RawQuery = q.Encode()
	return pu.String()
}

func benchPing(b *testing.B, db *sql.DB) *sql.DB {
	b.Helper()
	db.SetMaxOpenConns(benchConns)
	db.SetMaxIdleConns(benchConns)
	b.Cleanup(func() { db.Close() })
	testdb.Ping(b, db)
	return db
}

// rawPGX is pgx stdlib with the settings driverconf gives it in direct
// mode: exec mode, statement and description caches off.
func rawPGX(b *testing.B, u testdb.URLs) *sql.DB {
	db, err := sql.Open("pgx", withQuery(b, u.Direct,
		"default_query_exec_mode", "exec", "statement_cache_capacity", "0", "description_cache_capacity", "0"))
	if err != nil {
		b.Fatalf("sql.Open(pgx): %v", err)
	}
	return benchPing(b, db)
}

// rawPQ is lib/pq with the setting driverconf gives it: binary_parameters.
func rawPQ(b *testing.B, u testdb.URLs) *sql.DB {
	db, err := sql.Open("postgres", withQuery(b, u.Direct, "binary_parameters", "yes"))
	if err != nil {
		b.Fatalf("sql.Open(postgres): %v", err)
	}
	return benchPing(b, db)
}

func poolsafeDB(drv driverconf.Driver, mode driverconf.PoolMode) func(*testing.B, testdb.URLs) *sql.DB {
	return func(b *testing.B, u testdb.URLs) *sql.DB {
		dsn := u.Direct
		if mode == driverconf.Transaction {
			dsn = u.Tx
		}
		db, err := driverconf.OpenDB(driverconf.Config{
			URL: dsn, Driver: drv, PoolMode: mode,
			MaxOpenConns: benchConns, MaxIdleConns: benchConns,
		})
		if err != nil {
			b.Fatalf("OpenDB: %v", err)
		}
		return benchPing(b, db)
	}
}

// directClients pairs each raw driver with poolsafe over the same driver.
var directClients = []benchClient{
	{"raw-pgx", rawPGX},
	{"poolsafe-pgx", poolsafeDB(driverconf.PGX, driverconf.Direct)},
	{"raw-pq", rawPQ},
	{"poolsafe-pq", poolsafeDB(driverconf.PQ, driverconf.Direct)},
}

// loop runs fn b.N times (after one untimed call that opens the
// connection and fills any cache) and reports allocations.
func loop(b *testing.B, fn func(ctx context.Context, i int64) error) {
	b.Helper()
	ctx := context.Background()
	if err := fn(ctx, 0); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.ReportAllocs()
	cpu := cpuTime()
	var i int64
	for b.Loop() {
		i++
		if err := fn(ctx, i); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

func int8Query(db *sql.DB) func(ctx context.Context, i int64) error {
	return func(ctx context.Context, i int64) error {
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT $1::int8 + 1", i).Scan(&n); err != nil {
			return err
		}
		if n != i+1 {
			return fmt.Errorf("got %d, want %d", n, i+1)
		}
		return nil
	}
}

// BenchmarkQueryRowInt8 is the wrapper's fixed cost per query: one int8
// argument, one int8 column.
func BenchmarkQueryRowInt8(b *testing.B) {
	u := testdb.Get(b)
	for _, c := range directClients {
		b.Run(c.name, func(b *testing.B) {
			loop(b, int8Query(c.open(b, u)))
		})
	}
}

// rows10SQL returns 10 rows of the column types whose values the wrapper
// normalises: timestamptz (to UTC), numeric and uuid (to string on lib/pq),
// jsonb (left as []byte), text.
const rows10SQL = `SELECT timestamptz '2024-01-02 03:04:05.678+00' + g * interval '1 hour',
       (g * 1.25)::numeric(12, 2),
       ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid,
       jsonb_build_object('g', g, 'name', 'row ' || g),
       'row ' || g
  FROM generate_series($1::int8, $1::int8 + 9) g`

// BenchmarkQueryRows10 is the wrapper's cost with rows to normalise:
// 10 rows × (timestamptz, numeric, uuid, jsonb, text).
func BenchmarkQueryRows10(b *testing.B) {
	u := testdb.Get(b)
	base := time.Date(2024, 1, 2, 3, 4, 5, 678000000, time.UTC)
	for _, c := range directClients {
		b.Run(c.name, func(b *testing.B) {
			db := c.open(b, u)
			loop(b, func(ctx context.Context, i int64) error {
				rows, err := db.QueryContext(ctx, rows10SQL, i)
				if err != nil {
					return err
				}
				defer rows.Close()
				var (
					ts             time.Time
					num, id, label string
					js             []byte
					n              int64
				)
				for rows.Next() {
					if err := rows.Scan(&ts, &num, &id, &js, &label); err != nil {
						return err
					}
					if g := i + n; !ts.Equal(base.Add(time.Duration(g)*time.Hour)) || len(num) == 0 || len(id) != 36 || len(js) == 0 {
						return fmt.Errorf("row %d: got (%s, %q, %q, %s, %q)", n, ts, num, id, js, label)
					}
					n++
				}
				if err := rows.Err(); err != nil {
					return err
				}
				if n != 10 {
					return fmt.Errorf("got %d rows, want 10", n)
				}
				return nil
			})
		})
	}
}

// BenchmarkJSONBArg sends JSON into a jsonb parameter. A []byte argument
// works only through poolsafe (raw pgx exec mode sends it as bytea and
// fails; raw lib/pq with binary_parameters sends it in binary format, which
// jsonb rejects): poolsafe rewrites it to text after describing the
// statement once (cached). A string argument is the baseline on every
// client.
func BenchmarkJSONBArg(b *testing.B) {
	u := testdb.Get(b)
	const query = `SELECT ($1::jsonb ->> 'n')::int8`
	doc := `{"n": 42, "tags": ["a", "b", "c"], "name": "poolsafe"}`
	docBytes := []byte(doc)
	for _, c := range []struct {
		name  string
		open  func(*testing.B, testdb.URLs) *sql.DB
		bytes bool
	}{
		{"pgx/raw-string", rawPGX, false},
		{"pgx/poolsafe-string", poolsafeDB(driverconf.PGX, driverconf.Direct), false},
		{"pgx/poolsafe-bytes", poolsafeDB(driverconf.PGX, driverconf.Direct), true},
		{"pq/raw-string", rawPQ, false},
		{"pq/poolsafe-string", poolsafeDB(driverconf.PQ, driverconf.Direct), false},
		{"pq/poolsafe-bytes", poolsafeDB(driverconf.PQ, driverconf.Direct), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			db := c.open(b, u)
			var arg any = doc
			if c.bytes {
				arg = docBytes
			}
			loop(b, func(ctx context.Context, _ int64) error {
				var n int64
				if err := db.QueryRowContext(ctx, query, arg).Scan(&n); err != nil {
					return err
				}
				if n != 42 {
					return fmt.Errorf("got %d, want 42", n)
				}
				return nil
			})
		})
	}
}

// BenchmarkTxPoolPrepare runs through the transaction pooler, where
// poolsafe prepares client-side: plain QueryRow; QueryRow on a statement
// prepared once (database/sql re-prepares it per connection, client-side);
// and Prepare + QueryRow + Close per query, which costs one more round trip
// to check the SQL at Prepare time.
func BenchmarkTxPoolPrepare(b *testing.B) {
	u := testdb.Get(b)
	const query = "SELECT $1::int8 + 1"
	check := func(n, i int64) error {
		if n != i+1 {
			return fmt.Errorf("got %d, want %d", n, i+1)
		}
		return nil
	}
	for _, d := range []struct {
		name string
		drv  driverconf.Driver
	}{{"pgx", driverconf.PGX}, {"pq", driverconf.PQ}} {
		open := poolsafeDB(d.drv, driverconf.Transaction)
		b.Run(d.name+"/plain", func(b *testing.B) {
			loop(b, int8Query(open(b, u)))
		})
		b.Run(d.name+"/stmt", func(b *testing.B) {
			db := open(b, u)
			stmt, err := db.Prepare(query)
			if err != nil {
				b.Fatalf("Prepare: %v", err)
			}
			b.Cleanup(func() { stmt.Close() })
			loop(b, func(ctx context.Context, i int64) error {
				var n int64
				if err := stmt.QueryRowContext(ctx, i).Scan(&n); err != nil {
					return err
				}
				return check(n, i)
			})
		})
		b.Run(d.name+"/prepare-each", func(b *testing.B) {
			db := open(b, u)
			loop(b, func(ctx context.Context, i int64) error {
				stmt, err := db.PrepareContext(ctx, query)
				if err != nil {
					return err
				}
				defer stmt.Close()
				var n int64
				if err := stmt.QueryRowContext(ctx, i).Scan(&n); err != nil {
					return err
				}
				return check(n, i)
			})
		})
	}
}

// cpuTime is the CPU time (user + system, all threads) this process has
// used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the client's CPU time per operation since start as
// cpu-ns/op: unlike ns/op it leaves out time spent waiting for the server
// and for other processes on a busy machine, so it isolates what the client
// code costs.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}
