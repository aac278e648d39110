package conformance

import (
	"testing"

	"github.com/scrapersky/poolsafe/sqladapter"
)

func wireTests(t *testing.T, r *run) {
	// Every autocommit statement is exactly one round trip (one Sync or one
	// simple Query), and through a transaction pooler nothing — Prepare,
	// Preparex, NamedStmt, InTx — names a statement.
	r.test(t, "RoundTripsAndNamedStatements", func(t *testing.T) {
		tap, err := startTap(r.target.Config.URL)
		if err != nil {
			t.Fatal(err)
		}
		if tap == nil {
			t.Skip("capability: the URL has no single TCP host to tap")
		}
		defer tap.Close()
		e := r.newEnv(t)
		cfg := r.target.Config
		if cfg.URL, err = tap.Rewrite(cfg.URL); err != nil {
			t.Fatal(err)
		}
		db := openDB(t, cfg)
		ctx := e.ctx
		var n int64
		var s string

		tap.Reset()
		const statements = 50
		for i := range statements {
			if err := db.QueryRowContext(ctx, "SELECT $1::int8 * 2", i).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		c := tap.Counts()
		t.Logf("%d autocommit statements: %+v", statements, c)
		if c.RoundTrips() != statements {
			t.Errorf("%d autocommit statements took %d round trips (%d Sync + %d Query), want %d", statements, c.RoundTrips(), c.Sync, c.Query, statements)
		}

		if !r.target.swapsConnections() {
			return // direct and session modes let the driver name statements for db.Prepare
		}
		tap.Reset()
		st, err := db.PrepareContext(ctx, "SELECT $1::int8 + 1")
		if err != nil {
			t.Fatal(err)
		}
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
		c = tap.Counts()
		t.Logf("Prepare/Preparex/NamedStmt/InTx/[]byte workload: %+v", c)
		if c.NamedParse != 0 {
			t.Errorf("%d named Parse messages (e.g. %q), want 0", c.NamedParse, c.NamedStatements)
		}
	})
}
