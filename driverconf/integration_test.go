package driverconf_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // raw pgx driver for the negative control
	_ "github.com/lib/pq"              // raw lib/pq driver for the negative control

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

const (
	loadGoroutines = 32
	loadPerG       = 200
)

type target struct {
	name   string
	url    string
	mode   driverconf.PoolMode
	driver driverconf.Driver
	exec   driverconf.PgxExecMode
}

func targets(u testdb.URLs) []target {
	var ts []target
	for _, m := range []struct {
		mode driverconf.PoolMode
		url  string
	}{{driverconf.Direct, u.Direct}, {driverconf.Session, u.Session}, {driverconf.Transaction, u.Tx}} {
		ts = append(ts,
			target{"pgx-exec/" + string(m.mode), m.url, m.mode, driverconf.PGX, driverconf.ExecModeExec},
			target{"pgx-simple/" + string(m.mode), m.url, m.mode, driverconf.PGX, driverconf.ExecModeSimpleProtocol},
			target{"pq/" + string(m.mode), m.url, m.mode, driverconf.PQ, ""},
		)
	}
	return ts
}

func openT(t *testing.T, cfg driverconf.Config) *sql.DB {
	t.Helper()
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg, err)
	}
	t.Cleanup(func() { db.Close() })
	testdb.Ping(t, db.DB.DB)
	return db.DB.DB
}

func requireClean(t *testing.T, r testdb.Result) {
	t.Helper()
	t.Logf("%s", r)
	if r.Queries != loadGoroutines*loadPerG {
		t.Errorf("ran %d queries, want %d", r.Queries, loadGoroutines*loadPerG)
	}
	if r.Errors != 0 || r.Wrong != 0 {
		t.Errorf("%s; first failures:\n%s", r, strings.Join(r.Samples, "\n"))
	}
}

// TestCheckedLoad runs 32 goroutines × 200 queries with arguments, a
// distinct SQL text per goroutine, on every driver × pool mode.
func TestCheckedLoad(t *testing.T) {
	u := testdb.Get(t)
	for _, tg := range targets(u) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			db := openT(t, driverconf.Config{
				URL: tg.url, Driver: tg.driver, PoolMode: tg.mode, PgxExecMode: tg.exec,
				MaxOpenConns: 16, MaxIdleConns: 16,
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			requireClean(t, testdb.Load(ctx, loadGoroutines, loadPerG, testdb.DBQuery(db)))
		})
	}
}

func withQuery(t *testing.T, raw string, extra string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += extra
	return u.String()
}

// TestLegacyURLs opens the original system's URL and a Prisma-style URL
// through the transaction pool on both drivers: their hint keys must be
// removed (the pooler would refuse them) and must select transaction mode.
func TestLegacyURLs(t *testing.T) {
	u := testdb.Get(t)
	cases := []struct {
		name, extra string
		maxOpen     int
	}{
		{"original", "raw_sql=true&no_prepare=true&statement_cache_size=0", 10},
		{"prisma", "pgbouncer=true&connection_limit=5", 5},
	}
	for _, c := range cases {
		for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
			t.Run(c.name+"/"+string(d), func(t *testing.T) {
				t.Parallel()
				cfg, err := driverconf.Parse(withQuery(t, u.Tx, c.extra+"&driver="+string(d)))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.PoolMode != driverconf.Transaction || cfg.Driver != d {
					t.Fatalf("Parse gave PoolMode %q Driver %q, want transaction %q", cfg.PoolMode, cfg.Driver, d)
				}
				db := openT(t, cfg)
				if got := db.Stats().MaxOpenConnections; got != c.maxOpen {
					t.Errorf("MaxOpenConnections = %d, want %d", got, c.maxOpen)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				requireClean(t, testdb.Load(ctx, loadGoroutines, loadPerG, testdb.DBQuery(db)))
			})
		}
	}
}

// TestPoolsafeDriver opens the registered "poolsafe" driver with sql.Open.
func TestPoolsafeDriver(t *testing.T) {
	u := testdb.Get(t)
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, err := sql.Open(driverconf.DriverName, withQuery(t, u.Tx, "pool_mode=transaction&driver="+string(d)))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(16)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			requireClean(t, testdb.Load(ctx, loadGoroutines, loadPerG, testdb.DBQuery(db)))
		})
	}
}

// TestSettingsPerMode checks where URL settings land: sent at connection
// start in direct mode, applied after connecting in session mode, and
// through the transaction pooler applied to every statement with
// set_config(…, true) — never to the session, so other clients of the
// same server connections keep the server's default.
func TestSettingsPerMode(t *testing.T) {
	u := testdb.Get(t)
	for _, tg := range []struct {
		url  string
		mode driverconf.PoolMode
	}{
		{u.Direct, driverconf.Direct},
		{u.Session, driverconf.Session},
		{u.Tx, driverconf.Transaction},
	} {
		for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
			t.Run(string(tg.mode)+"/"+string(d), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				db := openT(t, driverconf.Config{
					URL: withQuery(t, tg.url, "statement_timeout=1234"), Driver: d, PoolMode: tg.mode,
				})
				var got string
				if err := db.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != "1234ms" {
					t.Errorf("statement_timeout = %q, want 1234ms", got)
				}
				if tg.mode != driverconf.Transaction {
					return
				}
				// Another client without the setting, on the same two server
				// connections, must not see it.
				other := openT(t, driverconf.Config{URL: tg.url, Driver: d, PoolMode: tg.mode})
				for range 10 {
					if err := db.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
						t.Fatal(err)
					}
					if err := other.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
						t.Fatal(err)
					}
					if got == "1234ms" {
						t.Fatal("statement_timeout leaked into the session through the transaction pooler")
					}
				}
			})
		}
	}
}

// TestNegativeControl proves the stack really swaps server connections:
// the same load through the transaction pool with each raw driver's
// default settings must fail somewhere. If it ever passes, the other tests
// prove nothing, so this test fails. It holds testdb.RawControlKey
// exclusively until both drivers are done: raw lib/pq can execute other
// clients' statements with its own arguments, and the conformance suite's
// tests, run by go test at the same time, hold it shared.
func TestNegativeControl(t *testing.T) {
	u := testdb.GetUnlocked(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := testdb.LockRawControl(ctx, "pgx", u.Direct, true)
	if err != nil {
		t.Fatalf("waiting for the other tests on the database to end: %v", err)
	}
	t.Cleanup(l.Release) // after the parallel subtests
	for _, name := range []string{"pgx", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sql.Open(name, u.Tx)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(16)
			db.SetMaxIdleConns(16)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r := testdb.Load(ctx, loadGoroutines, loadPerG, testdb.DBQuery(db))
			t.Logf("raw %s defaults through the transaction pool: %s", name, r)
			for _, s := range r.Samples {
				t.Logf("  e.g. %s", s)
			}
			if r.Errors+r.Wrong == 0 {
				t.Fatalf("negative control passed: raw %s defaults gave no errors and no wrong answers, "+
					"so the stack is not swapping server connections (is pool_mode=transaction, pool_size=2?)", name)
			}
		})
	}
}
