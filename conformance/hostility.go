package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // raw pgx, for the negative control
	_ "github.com/lib/pq"              // raw lib/pq, for the negative control

	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/sqladapter"
)

func hostilityTests(t *testing.T, r *run) {
	// Nothing poolsafe does inside a transaction — settings, search_path,
	// temporary tables — is visible to a later statement on any server
	// connection.
	r.test(t, "NoSessionStateLeaks", func(t *testing.T) {
		e := r.newEnv(t)
		var defaultPath string
		if err := e.db.GetContext(e.ctx, &defaultPath, "SHOW search_path"); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
				_, err := tx.ExecContext(e.ctx, "CREATE TEMP TABLE poolsafe_leak_probe (id int) ON COMMIT DROP")
				if err != nil {
					return err
				}
				var path string
				if err := tx.GetContext(e.ctx, &path, "SHOW search_path"); err != nil {
					return err
				}
				if path != e.schema {
					return fmt.Errorf("inside InTx search_path = %q, want %q", path, e.schema)
				}
				return nil
			}, sqladapter.WithSetting("search_path", e.schema), sqladapter.WithSetting("app.leak_probe", fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
		}
		res := testdb.Load(e.ctx, 8, 40, func(ctx context.Context, g, i int) (int64, int64, error) {
			var path string
			var probe sql.NullString
			var temp sql.NullString
			err := e.db.QueryRowContext(ctx, `SELECT current_setting('search_path'), current_setting('app.leak_probe', true),
				to_regclass('pg_temp.poolsafe_leak_probe')::text`).Scan(&path, &probe, &temp)
			if err != nil {
				return 0, 0, err
			}
			if path != defaultPath || probe.String != "" || temp.Valid {
				return 1, 0, fmt.Errorf("leak: search_path=%q app.leak_probe=%q temp table=%v", path, probe.String, temp.Valid)
			}
			return 0, 0, nil
		})
		requireClean(t, res, 8*40)
	})

	// Other callers' deadlines never fail a query that has none: a
	// connection a deadline broke is closed, not put back in the pool for
	// the next caller to find broken.
	// With more callers than connections, database/sql hands a connection
	// put back to a waiting caller without trying another.
	r.test(t, "OthersDeadlinesSpareMyQueries", func(t *testing.T) {
		e := r.newEnv(t)
		cfg := e.cfg
		cfg.MaxOpenConns, cfg.MaxIdleConns = 4, 4
		db := openDB(t, cfg)
		const perG = 80
		res := testdb.Load(e.ctx, 6, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
			if g%2 == 0 {
				qctx, cancel := context.WithTimeout(ctx, time.Duration(1+(g*perG+i)%20)*time.Millisecond)
				defer cancel()
				var v int64
				_ = db.QueryRowContext(qctx, "SELECT $1::int8 FROM pg_sleep(0.01)", i).Scan(&v) // may time out
				return 0, 0, nil
			}
			var v int64
			err := db.QueryRowContext(ctx, "SELECT $1::int8", i).Scan(&v)
			return v, int64(i), err
		})
		requireClean(t, res, 6*perG)
	})

	// DDL between queries does not break later queries: no plan or
	// statement description is cached across statements.
	r.test(t, "DDLBetweenQueries", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.evolving (id int PRIMARY KEY, a text)", "INSERT INTO {s}.evolving VALUES (1, 'x')")
		q := "SELECT * FROM " + e.schema + ".evolving WHERE id = $1"
		var stmt *sql.Stmt
		if r.target.swapsConnections() {
			var err error
			if stmt, err = e.db.PrepareContext(e.ctx, q); err != nil { // client-side: must survive DDL too
				t.Fatal(err)
			}
			defer stmt.Close()
		}
		columns := func() (int, error) {
			rows, err := e.db.QueryxContext(e.ctx, q, 1)
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			m := map[string]any{}
			for rows.Next() {
				if err := rows.MapScan(m); err != nil {
					return 0, err
				}
			}
			return len(m), rows.Err()
		}
		load := func(want int) {
			t.Helper()
			res := testdb.Load(e.ctx, 8, 20, func(ctx context.Context, g, i int) (int64, int64, error) {
				n, err := columns()
				if err == nil && stmt != nil {
					var rows *sql.Rows
					if rows, err = stmt.QueryContext(ctx, 1); err == nil {
						var cols []string
						cols, err = rows.Columns()
						rows.Close()
						if err == nil && len(cols) != want {
							return int64(len(cols)), int64(want), nil
						}
					}
				}
				return int64(n), int64(want), err
			})
			requireClean(t, res, 8*20)
		}
		load(2)
		for i, ddl := range []string{
			"ALTER TABLE {s}.evolving ADD COLUMN b int DEFAULT 7",
			"ALTER TABLE {s}.evolving ALTER COLUMN a TYPE varchar(10)",
			"ALTER TABLE {s}.evolving DROP COLUMN b",
		} {
			if _, err := e.direct.ExecContext(e.ctx, strings.ReplaceAll(ddl, "{s}", e.schema)); err != nil {
				t.Fatal(err)
			}
			load([]int{3, 3, 2}[i])
		}
	})

	// The negative control: through a pooler that swaps server
	// connections, the raw drivers' defaults must fail somewhere — proof
	// that the rest of the suite is testing something. It runs alone: raw
	// lib/pq would execute other tests' statements with its own arguments
	// (see exclusive.go).
	if !r.target.swapsConnections() {
		r.test(t, "NegativeControl", func(t *testing.T) {
			t.Skip("capability: the target keeps one server connection per client connection")
		})
		return
	}
	r.testAlone(t, "NegativeControl", func(t *testing.T) {
		for _, name := range []string{"pgx", "postgres"} {
			db, err := sql.Open(name, r.target.Config.URL)
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(16)
			db.SetMaxIdleConns(16)
			if err := db.PingContext(context.Background()); err != nil {
				db.Close()
				t.Errorf("raw %s cannot connect (%v), so the control proves nothing", name, err)
				continue
			}
			res := testdb.Load(context.Background(), goroutines, perG, testdb.DBQuery(db))
			db.Close()
			t.Logf("raw %s defaults: %s; e.g. %s", name, res, strings.Join(res.Samples, " | "))
			raw := RawResult{Driver: name, Queries: res.Queries, Errors: res.Errors, Wrong: res.Wrong}
			if len(res.Samples) > 0 {
				raw.Sample = res.Samples[0]
			}
			r.mu.Lock()
			r.raw = append(r.raw, raw)
			r.mu.Unlock()
			if res.Errors+res.Wrong == 0 {
				t.Errorf("negative control passed: raw %s defaults gave no errors and no wrong answers, "+
					"so this pooler does not swap server connections (pool_mode=transaction with a small pool?)", name)
			}
		}
	})
}
