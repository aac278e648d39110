package sqladapter_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/internal/wiretap"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// TestWireTransactionMode puts a protocol tap between each driver and the
// transaction pooler: every way of running SQL — Prepare, Preparex,
// NamedStmt, InTx with settings, []byte arguments — sends no named Parse,
// and each autocommit statement is exactly one round trip.
func TestWireTransactionMode(t *testing.T) {
	u := testdb.Get(t)
	pooler, err := url.Parse(u.Tx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets(t) {
		if !strings.HasSuffix(tg.name, "/transaction") {
			continue
		}
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			tap, err := wiretap.Start(pooler.Host)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tap.Close() })
			cfg := tg.cfg
			if cfg.URL, err = tap.Rewrite(cfg.URL); err != nil {
				t.Fatal(err)
			}
			db := open(t, cfg)
			ctx := loadCtx(t)

			// Everything a database/sql or sqlx program does.
			tap.Reset()
			st, err := db.PrepareContext(ctx, "SELECT $1::int8 + 1")
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for i := range 5 {
				if err := st.QueryRowContext(ctx, i).Scan(&n); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			sx, err := db.PreparexContext(ctx, "SELECT $1::text || 'x'")
			if err != nil {
				t.Fatal(err)
			}
			var s string
			if err := sx.GetContext(ctx, &s, "a"); err != nil {
				t.Fatal(err)
			}
			sx.Close()
			err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
				ns, err := tx.PrepareNamedContext(ctx, "SELECT CAST(:v AS int8) * 2")
				if err != nil {
					return err
				}
				defer ns.Close()
				return ns.GetContext(ctx, &n, map[string]any{"v": 21})
			}, sqladapter.WithSetting("app.tenant_id", "wire"))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.GetContext(ctx, &s, "SELECT $1::jsonb::text", []byte(`{"a":1}`)); err != nil {
				t.Fatal(err)
			}
			c := tap.Counts()
			t.Logf("workload: %+v", c)
			if c.NamedParse != 0 {
				t.Errorf("%d named Parse messages in transaction mode (e.g. %q), want 0", c.NamedParse, c.NamedStatements)
			}

			// Autocommit statements: one round trip each.
			tap.Reset()
			const statements = 50
			for i := range statements {
				if err := db.QueryRowContext(ctx, "SELECT $1::int8 * 2", i).Scan(&n); err != nil {
					t.Fatal(err)
				}
			}
			c = tap.Counts()
			t.Logf("%d autocommit statements: %+v", statements, c)
			if c.RoundTrips() != statements || c.NamedParse != 0 {
				t.Errorf("%d autocommit statements took %d round trips (%d Sync + %d Query), %d named Parse; want %d and 0",
					statements, c.RoundTrips(), c.Sync, c.Query, c.NamedParse, statements)
			}
		})
	}
}

// TestWireNegativeControl: the raw drivers' defaults do name statements
// (pgx's cache) — the tap sees it, so a zero above means something.
func TestWireNegativeControl(t *testing.T) {
	u := testdb.Get(t)
	pooler, err := url.Parse(u.Tx)
	if err != nil {
		t.Fatal(err)
	}
	tap, err := wiretap.Start(pooler.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	raw, err := tap.Rewrite(u.Tx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := driverconf.OpenDB(driverconf.Config{URL: raw, PoolMode: driverconf.Direct, PgxExecMode: driverconf.ExecModeCacheStatement})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.QueryRowContext(context.Background(), "SELECT $1::int8", 1).Scan(&n)
	if c := tap.Counts(); c.NamedParse == 0 {
		t.Errorf("pgx cache_statement sent no named Parse through the tap: %+v; the tap is not decoding", c)
	}
}
