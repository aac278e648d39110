package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/sqladapter"
)

const (
	goroutines = 32
	perG       = 100
)

// namedSQL is goroutine g's checked query with a named parameter.
func namedSQL(g int) string {
	return fmt.Sprintf("SELECT CAST(:v AS int8) * 1000 + %d AS v /* poolsafe named g%d */", g, g)
}

func requireClean(t *testing.T, r testdb.Result, want int64) {
	t.Helper()
	if r.Queries != want || r.Errors != 0 || r.Wrong != 0 {
		t.Errorf("%s (want %d queries, 0 errors, 0 wrong); first failures:\n%s", r, want, strings.Join(r.Samples, "\n"))
	}
}

func adapterTests(t *testing.T, r *run) {
	// Queries with arguments, a distinct SQL text per goroutine: a statement
	// or Bind that lands on another client's server connection shows up as
	// a wrong answer.
	r.test(t, "QueryRowUnderLoad", func(t *testing.T) {
		e := r.newEnv(t)
		requireClean(t, testdb.Load(e.ctx, goroutines, perG*2, testdb.DBQuery(e.db.DB.DB)), goroutines*perG*2)
	})
	r.test(t, "PrepareUnderLoad", func(t *testing.T) {
		e := r.newEnv(t)
		stmts := make([]*sql.Stmt, goroutines)
		for g := range goroutines {
			q, _ := testdb.CheckedSQL(g)
			s, err := e.db.PrepareContext(e.ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stmts[g] = s
		}
		res := testdb.Load(e.ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
			_, answer := testdb.CheckedSQL(g)
			var got int64
			err := stmts[g].QueryRowContext(ctx, i).Scan(&got)
			return got, answer(i), err
		})
		requireClean(t, res, goroutines*perG)
	})
	r.test(t, "PreparexPerQuery", func(t *testing.T) {
		e := r.newEnv(t)
		res := testdb.Load(e.ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
			q, answer := testdb.CheckedSQL(g)
			s, err := e.db.PreparexContext(ctx, q)
			if err != nil {
				return 0, 0, err
			}
			defer s.Close()
			var got int64
			err = s.GetContext(ctx, &got, i)
			return got, answer(i), err
		})
		requireClean(t, res, goroutines*perG)
	})
	r.test(t, "PrepareNamedUnderLoad", func(t *testing.T) {
		e := r.newEnv(t)
		stmts := make([]*sqlx.NamedStmt, goroutines)
		for g := range goroutines {
			ns, err := e.db.PrepareNamedContext(e.ctx, namedSQL(g))
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			stmts[g] = ns
		}
		res := testdb.Load(e.ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
			_, answer := testdb.CheckedSQL(g)
			var got int64
			err := stmts[g].GetContext(ctx, &got, map[string]any{"v": i})
			return got, answer(i), err
		})
		requireClean(t, res, goroutines*perG)
	})
	r.test(t, "NamedStmtInTx", func(t *testing.T) {
		e := r.newEnv(t)
		res := testdb.Load(e.ctx, goroutines, perG/10, func(ctx context.Context, g, i int) (int64, int64, error) {
			_, answer := testdb.CheckedSQL(g)
			var got int64
			err := e.db.InTx(ctx, func(tx *sqladapter.Tx) error {
				ns, err := tx.PrepareNamedContext(ctx, namedSQL(g))
				if err != nil {
					return err
				}
				defer ns.Close()
				for range 2 { // the statement is reused within the transaction
					if err := ns.GetContext(ctx, &got, map[string]any{"v": i}); err != nil {
						return err
					}
				}
				return nil
			})
			return got, answer(i), err
		})
		requireClean(t, res, goroutines*perG/10)
	})
	r.test(t, "PrepareChecksSQL", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.items (id int8 PRIMARY KEY, name text)", "INSERT INTO {s}.items VALUES (1, 'one')")
		s := e.schema
		for _, bad := range []string{
			"SELEC 1",
			"SELECT nosuchcolumn FROM " + s + ".items WHERE id = $1",
			"INSERT INTO " + s + ".nosuchtable (id) VALUES ($1)",
			"UPDATE " + s + ".items SET name = $1 WHERE nosuch = $2 -- trailing comment",
			"SELECT 1; DELETE FROM " + s + ".items",
		} {
			st, err := e.db.PrepareContext(e.ctx, bad)
			if err == nil {
				st.Close()
				t.Errorf("Prepare(%q) succeeded, want an error at Prepare time", bad)
			}
		}
		var n int
		if err := e.db.GetContext(e.ctx, &n, "SELECT count(*) FROM "+s+".items"); err != nil || n != 1 {
			t.Errorf("items has %d rows (err %v): a Prepare ran a statement", n, err)
		}
		st, err := e.db.PrepareContext(e.ctx, "SELECT name FROM "+s+".items WHERE id = $1 -- trailing comment")
		if err != nil {
			t.Fatalf("valid Prepare: %v", err)
		}
		defer st.Close()
		var name string
		if err := st.QueryRowContext(e.ctx, 1).Scan(&name); err != nil || name != "one" {
			t.Errorf("prepared query: %q, %v", name, err)
		}
		if err := st.QueryRowContext(e.ctx, 1, 2).Scan(&name); err == nil {
			t.Errorf("two arguments for one parameter: no error")
		}
	})
	r.test(t, "SqlxNamedInSelectMapScan", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.people (id int8 PRIMARY KEY, name text NOT NULL, tags text[] NOT NULL DEFAULT '{}')")
		type person struct {
			ID   int64  `db:"id"`
			Name string `db:"name"`
		}
		people := []person{{1, "ada"}, {2, "grace"}, {3, "edsger"}}
		for _, p := range people {
			if _, err := e.db.NamedExecContext(e.ctx, "INSERT INTO "+e.schema+".people (id, name) VALUES (:id, :name)", p); err != nil {
				t.Fatal(err)
			}
		}
		q, args, err := sqlx.In("SELECT id, name FROM "+e.schema+".people WHERE id IN (?) ORDER BY id", []int64{1, 3})
		if err != nil {
			t.Fatal(err)
		}
		var got []person
		if err := e.db.SelectContext(e.ctx, &got, e.db.Rebind(q), args...); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != people[0] || got[1] != people[2] {
			t.Errorf("sqlx.In + Rebind + Select = %+v", got)
		}
		var one person
		if err := e.db.GetContext(e.ctx, &one, "SELECT id, name FROM "+e.schema+".people WHERE id = $1", 2); err != nil || one != people[1] {
			t.Errorf("Get = %+v, %v", one, err)
		}
		rows, err := e.db.QueryxContext(e.ctx, "SELECT id, name, tags FROM "+e.schema+".people WHERE id = $1", 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			m := map[string]any{}
			if err := rows.MapScan(m); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"id": int64(1), "name": "ada", "tags": "{}"}
			if fmt.Sprint(m) != fmt.Sprint(want) {
				t.Errorf("MapScan = %#v, want %#v", m, want)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.db.GetContext(e.ctx, &one, "SELECT id, name FROM "+e.schema+".people WHERE id = $1", 99); !errors.Is(sqladapter.Classify(err), sqladapter.ErrNotFound) {
			t.Errorf("Get of a missing row: %v, want ErrNotFound after Classify", err)
		}
	})
	r.test(t, "TxSettingsApplyAndDoNotLeak", func(t *testing.T) {
		e := r.newEnv(t)
		cfg := e.cfg
		cfg.StatementTimeout = 4321 * time.Millisecond
		db := openDB(t, cfg)
		for i := range 20 {
			want := fmt.Sprintf("tenant-%d", i)
			err := db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
				var got, timeout string
				if err := tx.GetContext(e.ctx, &got, "SELECT current_setting('app.tenant_id')"); err != nil {
					return err
				}
				if err := tx.GetContext(e.ctx, &timeout, "SHOW statement_timeout"); err != nil {
					return err
				}
				if got != want || timeout != "4321ms" {
					return fmt.Errorf("inside InTx: app.tenant_id=%q statement_timeout=%q, want %q and 4321ms", got, timeout, want)
				}
				return nil
			}, sqladapter.WithSetting("app.tenant_id", want))
			if err != nil {
				t.Fatal(err)
			}
		}
		res := testdb.Load(e.ctx, 8, 50, func(ctx context.Context, g, i int) (int64, int64, error) {
			var v sql.NullString
			err := db.QueryRowContext(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&v)
			if v.String != "" {
				return 1, 0, err // leaked into a later autocommit statement
			}
			return 0, 0, err
		})
		requireClean(t, res, 8*50)
	})
	r.test(t, "InTxRetriesSerializationFailures", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.counter (id int PRIMARY KEY, n int NOT NULL)", "INSERT INTO {s}.counter VALUES (1, 0)")
		const workers, each = 6, 10
		res := testdb.Load(e.ctx, workers, each, func(ctx context.Context, g, i int) (int64, int64, error) {
			err := e.db.InTx(ctx, func(tx *sqladapter.Tx) error {
				var n int
				if err := tx.GetContext(ctx, &n, "SELECT n FROM "+e.schema+".counter WHERE id = 1"); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, "UPDATE "+e.schema+".counter SET n = $1 WHERE id = 1", n+1)
				return err
			}, sqladapter.WithIsolation(sql.LevelSerializable), sqladapter.WithAttempts(50))
			return 0, 0, err
		})
		requireClean(t, res, workers*each)
		var n int
		if err := e.db.GetContext(e.ctx, &n, "SELECT n FROM "+e.schema+".counter WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		if n != workers*each {
			t.Errorf("counter = %d, want %d (lost updates)", n, workers*each)
		}
		t.Logf("%d transactions, %d retries", workers*each, e.db.Stats().TxRetries)
	})
	r.test(t, "ContextCancelAndTimeout", func(t *testing.T) {
		e := r.newEnv(t)
		var one int
		dctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		defer cancel()
		err := e.db.GetContext(dctx, &one, "SELECT 1 FROM pg_sleep(5)")
		if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deadline: %v, want ErrTimeout and context.DeadlineExceeded", err)
		}
		cctx, ccancel := context.WithCancel(e.ctx)
		time.AfterFunc(200*time.Millisecond, ccancel)
		err = e.db.GetContext(cctx, &one, "SELECT 1 FROM pg_sleep(5)")
		if !errors.Is(err, sqladapter.ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancel: %v, want ErrCanceled and context.Canceled", err)
		}
		err = e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			_, err := tx.ExecContext(e.ctx, "SELECT pg_sleep(5)")
			return err
		}, sqladapter.WithSetting("statement_timeout", "100ms"))
		if !errors.Is(err, sqladapter.ErrTimeout) {
			t.Errorf("statement_timeout: %v, want ErrTimeout", err)
		}
		if err := e.db.GetContext(e.ctx, &one, "SELECT 1"); err != nil {
			t.Errorf("after cancellations: %v", err)
		}
	})
	r.test(t, "AcquireTimeout", func(t *testing.T) {
		e := r.newEnv(t)
		cfg := e.cfg
		cfg.MaxOpenConns, cfg.MaxIdleConns, cfg.AcquireTimeout = 1, 1, 200*time.Millisecond
		db := openDB(t, cfg)
		tx, err := db.BeginTxx(e.ctx, nil) // holds the only connection
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var one int
		err = db.GetContext(e.ctx, &one, "SELECT 1")
		if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("pool exhausted: %v, want ErrTimeout and context.DeadlineExceeded", err)
		}
		if waited := time.Since(start); waited < 150*time.Millisecond || waited > 5*time.Second {
			t.Errorf("failed after %s, want about 200ms", waited)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		// With a free connection, a call longer than the acquire timeout runs to the end.
		if err := db.GetContext(e.ctx, &one, "SELECT 1 FROM pg_sleep(0.5)"); err != nil {
			t.Fatalf("long query on a free connection: %v", err)
		}
	})
	r.test(t, "UnwrapForCopyFrom", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.copied (id int8, name text)")
		conn, err := e.db.Conn(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		supported := true
		err = conn.Raw(func(dc any) error {
			sc, ok := sqladapter.Unwrap(dc).(*stdlib.Conn)
			if !ok {
				supported = false // lib/pq: CopyFrom is pgx's
				return nil
			}
			n, err := sc.Conn().CopyFrom(e.ctx, pgx.Identifier{e.schema, "copied"}, []string{"id", "name"},
				pgx.CopyFromRows([][]any{{int64(1), "a"}, {int64(2), "b"}}))
			if err == nil && n != 2 {
				err = fmt.Errorf("copied %d rows, want 2", n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !supported {
			t.Skip("the driver's connection has no CopyFrom")
		}
	})
}
