package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// statementTests: what ordinary database/sql code does with statements —
// COPY, a raw BEGIN, settings from the configuration, DDL between two
// runs of the same SQL — behaves the same on every target and every way of
// opening the database.
func statementTests(t *testing.T, r *run) {
	r.test(t, "CopyInInTransaction", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.copied (id int8, name text)")
		tx, err := e.db.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		stmt, err := tx.PrepareContext(e.ctx, "COPY "+e.schema+".copied (id, name) FROM STDIN")
		if e.raw.WithDefaults().Driver != driverconf.PQ {
			// pgx has no COPY statement in database/sql: the error says
			// what to use instead.
			if err == nil || !strings.Contains(err.Error(), "CopyFrom") {
				t.Fatalf("pgx: Prepare(COPY … FROM STDIN) error = %v, want one naming CopyFrom", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Prepare(pq.CopyIn): %v", err)
		}
		for i := range 100 {
			if _, err := stmt.ExecContext(e.ctx, int64(i), fmt.Sprintf("row %d", i)); err != nil {
				t.Fatalf("copy row %d: %v", i, err)
			}
		}
		if _, err := stmt.ExecContext(e.ctx); err != nil {
			t.Fatalf("flush COPY: %v", err)
		}
		if err := stmt.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var n, sum int64
		if err := e.direct.QueryRowContext(e.ctx, "SELECT count(*), coalesce(sum(id), 0) FROM "+e.schema+".copied").Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		if n != 100 || sum != 4950 {
			t.Errorf("stored %d rows with id sum %d, want 100 and 4950", n, sum)
		}
	})
	r.test(t, "CopyInOutsideTransactionFails", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.copied (id int8)")
		stmt, err := e.db.PrepareContext(e.ctx, "COPY "+e.schema+".copied (id) FROM STDIN")
		if err == nil {
			_, err = stmt.ExecContext(e.ctx, int64(1))
			if err == nil {
				_, err = stmt.ExecContext(e.ctx)
			}
			stmt.Close()
		}
		if err == nil {
			t.Fatal("COPY FROM STDIN outside a transaction succeeded; want an error that says what is wrong")
		}
		if errors.Is(err, sqladapter.ErrPoolerIncompatible) {
			t.Errorf("error = %v: it blames the pooler, but the call is what is wrong", err)
		}
		var n int
		if err := e.direct.QueryRowContext(e.ctx, "SELECT count(*) FROM "+e.schema+".copied").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows stored by a failed COPY", n)
		}
	})
	r.test(t, "SeveralStatementsWithoutArguments", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (v int)")
		// lib/pq sends a query without arguments as one simple Query
		// message, so several statements run; pgx must do the same.
		q := "INSERT INTO " + e.schema + ".t VALUES (1); INSERT INTO " + e.schema + ".t VALUES (2)"
		if _, err := e.db.ExecContext(e.ctx, q); err != nil {
			t.Fatalf("Exec of two statements: %v", err)
		}
		var n int
		if err := e.db.QueryRowContext(e.ctx, "SELECT 1; SELECT count(*) FROM "+e.schema+".t").Scan(&n); err != nil {
			t.Fatalf("Query of two statements: %v", err)
		}
		if n != 1 {
			t.Errorf("first result of a two-statement query = %d, want 1 (the first statement's)", n)
		}
		if err := e.direct.QueryRowContext(e.ctx, "SELECT count(*) FROM "+e.schema+".t").Scan(&n); err != nil || n != 2 {
			t.Errorf("stored %d rows (%v), want 2", n, err)
		}
	})
	r.test(t, "ResultSetsOfSeveralStatements", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (v int)")
		// As lib/pq returns them: one result set per statement that has
		// columns, in order; statements without (INSERT, SET) are skipped.
		q := "SELECT 1 AS a; INSERT INTO " + e.schema + ".t VALUES (7); SELECT 2 AS b WHERE false; " +
			"SELECT v, 'x' AS w FROM " + e.schema + ".t"
		rows, err := e.db.QueryContext(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			cols, err := rows.Columns()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strings.Join(cols, ","))
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprint(vals...))
			}
			if !rows.NextResultSet() {
				break
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if want := []string{"a", "1", "b", "v,w", "7x"}; !slices.Equal(got, want) {
			t.Errorf("result sets %q, want %q", got, want)
		}
		// A statement without columns first: QueryRow reads the first
		// result set that has them.
		var n int
		if err := e.db.QueryRowContext(e.ctx, "INSERT INTO "+e.schema+".t VALUES (8); SELECT count(*) FROM "+e.schema+".t").Scan(&n); err != nil || n != 2 {
			t.Errorf("count after INSERT; SELECT = %d, %v; want 2", n, err)
		}
		// An error in a later statement is the rows' error, classified.
		rows, err = e.db.QueryContext(e.ctx, "SELECT 1; SELECT 1/0")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		for rows.NextResultSet() {
			for rows.Next() {
			}
		}
		if err := rows.Err(); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Errorf("rows.Err() = %v, want the division by zero as ErrInvalidInput", err)
		}
		rows.Close()
		// QueryRow reads the first row and closes the rows: the later
		// statement's error comes from Close, classified too.
		if err := e.db.QueryRowContext(e.ctx, "SELECT 1; SELECT 1/0").Scan(&n); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Errorf("QueryRow(SELECT 1; SELECT 1/0).Scan = %v, want the division by zero as ErrInvalidInput", err)
		}
	})
	r.test(t, "SnapshotIsolation", func(t *testing.T) {
		e := r.newEnv(t)
		// PostgreSQL's REPEATABLE READ is snapshot isolation: pgx maps
		// sql.LevelSnapshot to it, lib/pq refuses it.
		tx, err := e.db.BeginTx(e.ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
		if err != nil {
			t.Fatalf("BeginTx(LevelSnapshot): %v", err)
		}
		defer tx.Rollback()
		var level string
		if err := tx.QueryRowContext(e.ctx, "SHOW transaction_isolation").Scan(&level); err != nil || level != "repeatable read" {
			t.Errorf("transaction_isolation = %q, %v; want repeatable read", level, err)
		}
	})
	// A procedure or DO block may COMMIT, which PostgreSQL refuses inside a
	// transaction block: with settings configured, CALL and DO outside a
	// transaction run as they are, not in a transaction of their own.
	r.test(t, "ProcedureThatCommits", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (v int)",
			"CREATE PROCEDURE {s}.two() LANGUAGE plpgsql AS $$BEGIN INSERT INTO {s}.t VALUES (1); COMMIT; INSERT INTO {s}.t VALUES (2); END$$")
		cfg := e.cfg
		cfg.StatementTimeout = 5 * time.Second
		db := openDB(t, cfg)
		if _, err := db.ExecContext(e.ctx, "CALL "+e.schema+".two()"); err != nil {
			t.Errorf("CALL of a procedure that commits: %v", err)
		}
		if _, err := db.ExecContext(e.ctx, "DO $$BEGIN INSERT INTO "+e.schema+".t VALUES (3); COMMIT; END$$"); err != nil {
			t.Errorf("DO block that commits: %v", err)
		}
		var n int
		if err := db.QueryRowContext(e.ctx, "SELECT count(*) FROM "+e.schema+".t").Scan(&n); err != nil || n != 3 {
			t.Errorf("%d rows, %v; want 3", n, err)
		}
	})
	r.test(t, "RawBeginNotLeftOpen", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (v int)")
		cfg := e.cfg
		cfg.MaxOpenConns, cfg.MaxIdleConns = 1, 1
		db := openDB(t, cfg)
		// A raw BEGIN through ExecContext, and the connection goes back to
		// the pool still inside the transaction.
		if _, err := db.ExecContext(e.ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(e.ctx, "INSERT INTO "+e.schema+".t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		// The next call must not run inside that transaction: it sees no
		// open transaction and its write is committed on its own.
		var inTx bool
		if err := db.QueryRowContext(e.ctx, "SELECT txid_current_if_assigned() IS NOT NULL").Scan(&inTx); err != nil {
			t.Fatal(err)
		}
		if inTx {
			t.Error("a statement ran inside a transaction left open by an earlier raw BEGIN")
		}
		var open int
		if err := e.direct.QueryRowContext(e.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state LIKE 'idle in transaction%' AND query LIKE '%`+e.schema+`.t%'`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open != 0 {
			t.Errorf("%d server connections left idle in transaction", open)
		}
	})
	r.test(t, "SettingsOnEveryHandle", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (v text)", "INSERT INTO {s}.t VALUES ('mine')")
		cfg := e.cfg
		cfg.SearchPath = e.schema
		cfg.StatementTimeout = 12345 * time.Millisecond
		cfg.Settings = map[string]string{"app.tenant": "t-1"}
		check := func(t *testing.T, name string, q interface {
			QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
		}) {
			t.Helper()
			for i := range 6 { // several statements, so the pooler swaps connections
				var v, timeout, tenant string
				err := q.QueryRowContext(e.ctx, "SELECT (SELECT v FROM t), current_setting('statement_timeout'), current_setting('app.tenant', true)").
					Scan(&v, &timeout, &tenant)
				if err != nil {
					t.Fatalf("%s: statement %d: %v", name, i, err)
				}
				if v != "mine" || timeout != "12345ms" || tenant != "t-1" {
					t.Fatalf("%s: statement %d saw table %q, statement_timeout %q, app.tenant %q; want the configured ones",
						name, i, v, timeout, tenant)
				}
			}
		}
		db, err := driverconf.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		check(t, "driverconf.Open", db)
		check(t, "driverconf.Open's *sql.DB", db.DB.DB)
		err = db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			check(t, "InTx", tx)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		stx, err := db.DB.DB.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "sql.Tx", stx)
		_ = stx.Rollback()
		stmt, err := db.PreparexContext(e.ctx, "SELECT (SELECT v FROM t), current_setting('statement_timeout'), current_setting('app.tenant', true)")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			var v, timeout, tenant string
			if err := stmt.QueryRowContext(e.ctx).Scan(&v, &timeout, &tenant); err != nil || v != "mine" || timeout != "12345ms" {
				t.Fatalf("prepared statement: %v, table %q, statement_timeout %q", err, v, timeout)
			}
		}
		stmt.Close()
		dsn := withKeys(t, cfg.URL, map[string]string{
			"driver": string(cfg.WithDefaults().Driver), "pool_mode": string(cfg.WithDefaults().PoolMode),
			"search_path": e.schema, "statement_timeout": "12345", "app.tenant": "t-1",
		})
		plain, err := sql.Open(driverconf.DriverName, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		check(t, `sql.Open("poolsafe")`, plain)
		check(t, "sqlx over sql.Open", sqlx.NewDb(plain, driverconf.DriverName))
	})
	r.test(t, "DescribeAfterDDL", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (id int PRIMARY KEY, b text)")
		ins := "INSERT INTO " + e.schema + ".t (id, b) VALUES ($1, $2)"
		get := "SELECT b::text FROM " + e.schema + ".t WHERE id = $1"
		if _, err := e.db.ExecContext(e.ctx, ins, 1, []byte(`{"a":1}`)); err != nil {
			t.Fatal(err)
		}
		// The column becomes bytea: the same SQL text now has a bytea
		// parameter, and []byte must be sent as bytes.
		if _, err := e.db.ExecContext(e.ctx, "ALTER TABLE "+e.schema+".t ALTER COLUMN b TYPE bytea USING b::bytea"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.ExecContext(e.ctx, ins, 2, []byte{0x5c, 0x00, 0xff}); err != nil {
			t.Fatalf("insert bytes after ALTER TABLE: %v", err)
		}
		var got string
		if err := e.db.QueryRowContext(e.ctx, get, 2).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != `\x5c00ff` {
			t.Errorf("bytea after ALTER TABLE stored as %q, want \\x5c00ff", got)
		}
	})
	r.test(t, "DescribeFailureInTransaction", func(t *testing.T) {
		e := r.newEnv(t, "CREATE TABLE {s}.t (b bytea)")
		err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			_, err := tx.ExecContext(e.ctx, "INSERT INTO "+e.schema+".missing (b) VALUES ($1)", []byte("x"))
			return err
		})
		var pe *sqladapter.Error
		if !errors.As(err, &pe) || pe.SQLState != "42P01" {
			t.Fatalf("insert into a missing table with a []byte argument: %v, want the server's 42P01", err)
		}
	})
}

// withKeys returns rawURL with query keys added (postgres:// URLs only).
func withKeys(t *testing.T, rawURL string, keys map[string]string) string {
	t.Helper()
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	var b strings.Builder
	b.WriteString(rawURL)
	for k, v := range keys {
		b.WriteString(sep + k + "=" + v)
		sep = "&"
	}
	return b.String()
}
