package sqladapter_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/sqladapter"
)

type target struct {
	name string
	cfg  driverconf.Config
}

// targets are {pgx exec, pgx simple_protocol, lib/pq} × {direct, session, transaction}.
func targets(t *testing.T) []target {
	u := testdb.Get(t)
	var ts []target
	for _, m := range []struct {
		mode driverconf.PoolMode
		url  string
	}{{driverconf.Direct, u.Direct}, {driverconf.Session, u.Session}, {driverconf.Transaction, u.Tx}} {
		for _, d := range []struct {
			name string
			drv  driverconf.Driver
			exec driverconf.PgxExecMode
		}{{"pgx", driverconf.PGX, driverconf.ExecModeExec}, {"pgx-simple", driverconf.PGX, driverconf.ExecModeSimpleProtocol}, {"pq", driverconf.PQ, ""}} {
			ts = append(ts, target{
				name: d.name + "/" + string(m.mode),
				cfg: driverconf.Config{URL: m.url, Driver: d.drv, PoolMode: m.mode, PgxExecMode: d.exec,
					MaxOpenConns: 16, MaxIdleConns: 16},
			})
		}
	}
	return ts
}

func open(t *testing.T, cfg driverconf.Config) *sqladapter.DB {
	t.Helper()
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	testdb.Ping(t, db.DB.DB)
	return db
}

// schema creates a fresh schema over the direct URL and drops it at cleanup.
// Statements name it explicitly: a transaction pooler keeps no search_path.
func schema(t *testing.T, ddl ...string) string {
	t.Helper()
	u := testdb.Get(t)
	db, err := sql.Open("pgx", u.Direct)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sa_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+name+" CASCADE")
		db.Close()
	})
	for _, d := range ddl {
		if _, err := db.ExecContext(ctx, strings.ReplaceAll(d, "{s}", name)); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	return name
}

func loadCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func requireClean(t *testing.T, r testdb.Result, want int64) {
	t.Helper()
	if r.Queries != want || r.Errors != 0 || r.Wrong != 0 {
		t.Errorf("%s (want %d queries, 0 errors, 0 wrong); first failures:\n%s", r, want, strings.Join(r.Samples, "\n"))
	}
}

const (
	goroutines = 32
	perG       = 100
)

// namedSQL is goroutine g's checked query with a named parameter.
func namedSQL(g int) string {
	return fmt.Sprintf("SELECT CAST(:v AS int8) * 1000 + %d AS v /* poolsafe named g%d */", g, g)
}

// TestPrepareUnderLoad runs db.Prepare, sqlx Preparex, PrepareNamed and a
// NamedStmt inside InTx from 32 goroutines, each with its own SQL, on every
// driver × pool mode: no errors and no wrong answers.
func TestPrepareUnderLoad(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			db := open(t, tg.cfg)
			ctx := loadCtx(t)
			t.Run("Prepare", func(t *testing.T) {
				stmts := make([]*sql.Stmt, goroutines)
				for g := range goroutines {
					q, _ := testdb.CheckedSQL(g)
					s, err := db.PrepareContext(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					stmts[g] = s
				}
				r := testdb.Load(ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
					_, answer := testdb.CheckedSQL(g)
					var got int64
					err := stmts[g].QueryRowContext(ctx, i).Scan(&got)
					return got, answer(i), err
				})
				requireClean(t, r, goroutines*perG)
			})
			t.Run("Preparex", func(t *testing.T) {
				r := testdb.Load(ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
					q, answer := testdb.CheckedSQL(g)
					s, err := db.PreparexContext(ctx, q) // a statement per query: Prepare's round trip under load
					if err != nil {
						return 0, 0, err
					}
					defer s.Close()
					var got int64
					err = s.GetContext(ctx, &got, i)
					return got, answer(i), err
				})
				requireClean(t, r, goroutines*perG)
			})
			t.Run("PrepareNamed", func(t *testing.T) {
				stmts := make([]interface {
					GetContext(context.Context, any, any) error
				}, goroutines)
				for g := range goroutines {
					ns, err := db.PrepareNamedContext(ctx, namedSQL(g))
					if err != nil {
						t.Fatal(err)
					}
					defer ns.Close()
					stmts[g] = ns
				}
				r := testdb.Load(ctx, goroutines, perG, func(ctx context.Context, g, i int) (int64, int64, error) {
					_, answer := testdb.CheckedSQL(g)
					var got int64
					err := stmts[g].GetContext(ctx, &got, map[string]any{"v": i})
					return got, answer(i), err
				})
				requireClean(t, r, goroutines*perG)
			})
			t.Run("NamedStmtInTx", func(t *testing.T) {
				r := testdb.Load(ctx, goroutines, perG/10, func(ctx context.Context, g, i int) (int64, int64, error) {
					_, answer := testdb.CheckedSQL(g)
					var got int64
					err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
						ns, err := tx.PrepareNamedContext(ctx, namedSQL(g))
						if err != nil {
							return err
						}
						defer ns.Close()
						// Twice in one transaction: the statement is reused.
						for range 2 {
							if err := ns.GetContext(ctx, &got, map[string]any{"v": i}); err != nil {
								return err
							}
						}
						return nil
					})
					return got, answer(i), err
				})
				requireClean(t, r, goroutines*perG/10)
			})
		})
	}
}

// TestPrepareChecksSQL: invalid SQL fails at Prepare time on every target,
// as it does without a pooler; valid SQL reports its parameter count.
func TestPrepareChecksSQL(t *testing.T) {
	s := schema(t, "CREATE TABLE {s}.items (id int8 PRIMARY KEY, name text)", "INSERT INTO {s}.items VALUES (1, 'one')")
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			db := open(t, tg.cfg)
			ctx := loadCtx(t)
			for _, bad := range []string{
				"SELEC 1",
				"SELECT nosuchcolumn FROM " + s + ".items WHERE id = $1",
				"INSERT INTO " + s + ".nosuchtable (id) VALUES ($1)",
				"UPDATE " + s + ".items SET name = $1 WHERE nosuch = $2 -- trailing comment",
				"SELECT 1; DELETE FROM " + s + ".items",
			} {
				st, err := db.PrepareContext(ctx, bad)
				if err == nil {
					st.Close()
					t.Errorf("Prepare(%q) succeeded, want an error at Prepare time", bad)
				}
			}
			var n int
			if err := db.GetContext(ctx, &n, "SELECT count(*) FROM "+s+".items"); err != nil || n != 1 {
				t.Errorf("items has %d rows (err %v): a Prepare ran a statement", n, err)
			}
			st, err := db.PrepareContext(ctx, "SELECT name FROM "+s+".items WHERE id = $1 -- trailing comment")
			if err != nil {
				t.Fatalf("valid Prepare: %v", err)
			}
			defer st.Close()
			var name string
			if err := st.QueryRowContext(ctx, 1, 2).Scan(&name); err == nil || !strings.Contains(err.Error(), "argument") {
				t.Errorf("two arguments for one parameter: got %v, want an argument-count error", err)
			}
		})
	}
}

// TestSettingsDoNotLeak: a setting made with WithSetting inside InTx is
// visible inside and never to a later autocommit query on any server
// connection; config settings apply inside transactions in every mode.
func TestSettingsDoNotLeak(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			cfg := tg.cfg
			cfg.StatementTimeout = 4321 * time.Millisecond
			db := open(t, cfg)
			ctx := loadCtx(t)
			for i := range 20 {
				want := fmt.Sprintf("tenant-%d", i)
				err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
					var got, timeout string
					if err := tx.GetContext(ctx, &got, "SELECT current_setting('app.tenant_id')"); err != nil {
						return err
					}
					if err := tx.GetContext(ctx, &timeout, "SHOW statement_timeout"); err != nil {
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
			r := testdb.Load(ctx, 8, 50, func(ctx context.Context, g, i int) (int64, int64, error) {
				var v sql.NullString
				err := db.QueryRowContext(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&v)
				if v.String != "" {
					return 1, 0, err // leaked
				}
				return 0, 0, err
			})
			requireClean(t, r, 8*50)
		})
	}
}

// TestInTxRetriesSerializationFailures: concurrent SERIALIZABLE
// read-modify-write transactions all land, with retries.
func TestInTxRetriesSerializationFailures(t *testing.T) {
	for _, tg := range targets(t) {
		if !strings.HasSuffix(tg.name, "/transaction") && !strings.HasSuffix(tg.name, "/direct") {
			continue
		}
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := schema(t, "CREATE TABLE {s}.counter (id int PRIMARY KEY, n int NOT NULL)", "INSERT INTO {s}.counter VALUES (1, 0)")
			db := open(t, tg.cfg)
			ctx := loadCtx(t)
			const workers, each = 6, 10
			r := testdb.Load(ctx, workers, each, func(ctx context.Context, g, i int) (int64, int64, error) {
				err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
					var n int
					if err := tx.GetContext(ctx, &n, "SELECT n FROM "+s+".counter WHERE id = 1"); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE "+s+".counter SET n = $1 WHERE id = 1", n+1)
					return err
				}, sqladapter.WithIsolation(sql.LevelSerializable), sqladapter.WithAttempts(50))
				return 0, 0, err
			})
			requireClean(t, r, workers*each)
			var n int
			if err := db.GetContext(ctx, &n, "SELECT n FROM "+s+".counter WHERE id = 1"); err != nil {
				t.Fatal(err)
			}
			if n != workers*each {
				t.Errorf("counter = %d, want %d", n, workers*each)
			}
			t.Logf("%d transactions, %d retries", workers*each, db.Stats().TxRetries)
		})
	}
}

// TestAcquireTimeout: with every connection busy, a call fails after the
// acquire timeout; a call that gets a connection is not cut short by it;
// cancelling the caller's context still stops the call.
func TestAcquireTimeout(t *testing.T) {
	for _, tg := range targets(t) {
		if !strings.HasSuffix(tg.name, "/transaction") {
			continue
		}
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			cfg := tg.cfg
			cfg.MaxOpenConns, cfg.MaxIdleConns, cfg.AcquireTimeout = 1, 1, 200*time.Millisecond
			db := open(t, cfg)
			ctx := loadCtx(t)

			tx, err := db.BeginTxx(ctx, nil) // holds the only connection
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var one int
			err = db.GetContext(ctx, &one, "SELECT 1")
			waited := time.Since(start)
			if !errors.Is(err, sqladapter.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("with the pool exhausted: err = %v, want ErrTimeout and context.DeadlineExceeded", err)
			}
			if waited < 150*time.Millisecond || waited > 5*time.Second {
				t.Errorf("failed after %s, want about 200ms", waited)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}

			// A free connection: a query longer than the acquire timeout runs to the end.
			if err := db.GetContext(ctx, &one, "SELECT 1 FROM pg_sleep(0.5)"); err != nil {
				t.Fatalf("long query on a free connection: %v", err)
			}
			err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
				return tx.GetContext(ctx, &one, "SELECT 1 FROM pg_sleep(0.5)")
			})
			if err != nil {
				t.Fatalf("long transaction on a free connection: %v", err)
			}

			// The caller's cancellation still reaches the query.
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(200*time.Millisecond, cancel)
			err = db.GetContext(cctx, &one, "SELECT 1 FROM pg_sleep(5)")
			if !errors.Is(err, sqladapter.ErrCanceled) {
				t.Fatalf("canceled query: err = %v, want ErrCanceled", err)
			}
			if err := db.GetContext(ctx, &one, "SELECT 1"); err != nil {
				t.Fatalf("after cancel: %v", err)
			}
		})
	}
}

// TestUnwrapRawConn reaches the driver's own connection through
// sql.Conn.Raw, for pgx CopyFrom.
func TestUnwrapRawConn(t *testing.T) {
	s := schema(t, "CREATE TABLE {s}.copied (id int8, name text)")
	for _, tg := range targets(t) {
		if !strings.HasPrefix(tg.name, "pgx/") {
			continue
		}
		t.Run(tg.name, func(t *testing.T) {
			db := open(t, tg.cfg)
			ctx := loadCtx(t)
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var n int64
			err = conn.Raw(func(dc any) error {
				sc, ok := sqladapter.Unwrap(dc).(*stdlib.Conn)
				if !ok {
					return fmt.Errorf("Unwrap gave %T, want *stdlib.Conn", sqladapter.Unwrap(dc))
				}
				n, err = sc.Conn().CopyFrom(ctx, pgx.Identifier{s, "copied"}, []string{"id", "name"},
					pgx.CopyFromRows([][]any{{int64(1), "a"}, {int64(2), "b"}}))
				return err
			})
			if err != nil || n != 2 {
				t.Fatalf("CopyFrom: n=%d err=%v", n, err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM "+s+".copied"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
