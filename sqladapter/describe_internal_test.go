package sqladapter

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lib/pq"
)

func TestPreparable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"SELECT 1", true},
		{"select * from t", true},
		{"  \n\tSELECT 1", true},
		{"-- x\nSELECT 1", true},
		{"-- a\n-- b\n  select 1", true},
		{"/* c */ SELECT 1", true},
		{"/* a */ /* b */\nSELECT 1", true},
		{"-- x\n/* y */ (SELECT 1) UNION (SELECT 2)", true},
		{"(SELECT 1)", true},
		{"((select 1))", true},
		{"WITH x AS (SELECT 1) SELECT * FROM x", true},
		{"INSERT INTO t VALUES ($1)", true},
		{"UPDATE t SET a = $1", true},
		{"DELETE FROM t", true},
		{"VALUES (1), (2)", true},
		{"TABLE t", true},
		{"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", true},
		{"CREATE TABLE t (a int)", false},
		{"create index on t (a)", false},
		{"BEGIN", false},
		{"SET statement_timeout = 0", false},
		{"SHOW search_path", false},
		{"COPY t FROM STDIN", false},
		{"DROP TABLE t", false},
		{"ALTER TABLE t ADD b int", false},
		{"EXPLAIN SELECT 1", false},
		{"TRUNCATE t", false},
		{"-- only a comment", false},
		{"/* unterminated", false},
		{"", false},
		{"   ", false},
	} {
		if got := preparable(tc.query); got != tc.want {
			t.Errorf("preparable(%q) = %t, want %t", tc.query, got, tc.want)
		}
	}
}

func TestDescribeCacheBound(t *testing.T) {
	t.Parallel()
	d := newDescribeCache(2)
	d.put("a", []string{"text"})
	d.put("b", []string{"bytea"})
	if got, ok := d.get("a"); !ok || !reflect.DeepEqual(got, []string{"text"}) {
		t.Fatalf("get(a) = %v, %t", got, ok)
	}
	if got, ok := d.get("b"); !ok || !reflect.DeepEqual(got, []string{"bytea"}) {
		t.Fatalf("get(b) = %v, %t", got, ok)
	}
	d.put("c", []string{})
	if _, ok := d.get("a"); ok {
		t.Error("a survived a put beyond the bound")
	}
	if _, ok := d.get("b"); ok {
		t.Error("b survived a put beyond the bound")
	}
	if got, ok := d.get("c"); !ok || len(got) != 0 {
		t.Errorf("get(c) = %v, %t; want [], true", got, ok)
	}
	if n := len(d.m); n != 1 {
		t.Errorf("cache holds %d entries after clearing, want 1", n)
	}
	for i := range 10 {
		d.put(strconv.Itoa(i), nil)
		if n := len(d.m); n > 2 {
			t.Fatalf("cache holds %d entries, bound 2", n)
		}
	}
	if _, ok := d.get("missing"); ok {
		t.Error("get(missing) found something")
	}
}

// describeConn answers pqDescribe's PREPARE message with types (a comma
// separated list, as array_to_string returns it) or err, and records
// every statement it receives.
type describeConn struct {
	mu      sync.Mutex
	types   string
	err     error
	queries []string
	execs   [][]driver.NamedValue
}

func (c *describeConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("describeConn: unexpected Prepare")
}
func (c *describeConn) Close() error { return nil }
func (c *describeConn) Begin() (driver.Tx, error) {
	return nil, errors.New("describeConn: unexpected Begin")
}

func (c *describeConn) QueryContext(_ context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, query)
	if c.err != nil {
		return nil, c.err
	}
	return &typedRows{
		cols: []string{"array_to_string"}, typeNames: []string{"TEXT"}, scanTypes: []reflect.Type{reflect.TypeFor[string]()},
		data: [][]driver.Value{{[]byte(c.types)}},
	}, nil
}

func (c *describeConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, query)
	c.execs = append(c.execs, args)
	return driver.RowsAffected(1), nil
}

func (c *describeConn) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}

func TestPQDescribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const q = "INSERT INTO t (b, j) VALUES ($1, $2) -- trailing comment"

	dc := &describeConn{types: "bytea,jsonb"}
	types, err := pqDescribe(ctx, dc, q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(types, []string{"bytea", "jsonb"}) {
		t.Errorf("types = %q, want [bytea jsonb]", types)
	}
	sent := dc.sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d messages, want 1: %q", len(sent), sent)
	}
	msg := sent[0]
	name, _, ok := strings.Cut(strings.TrimPrefix(msg, "PREPARE "), " AS ")
	if !strings.HasPrefix(msg, "PREPARE poolsafe_describe_") || !ok {
		t.Fatalf("message does not start with PREPARE poolsafe_describe_…: %q", msg)
	}
	if !strings.Contains(msg, " AS "+q+"\n;") {
		t.Errorf("message does not hold the query followed by a newline: %q", msg)
	}
	if !strings.Contains(msg, "WHERE name = '"+name+"'") || !strings.HasSuffix(msg, ";DEALLOCATE "+name) {
		t.Errorf("message does not look the statement up and deallocate it: %q", msg)
	}

	dc2 := &describeConn{}
	if _, err := pqDescribe(ctx, dc2, q); err != nil {
		t.Fatal(err)
	}
	if name2, _, _ := strings.Cut(strings.TrimPrefix(dc2.sent()[0], "PREPARE "), " AS "); name2 == name {
		t.Errorf("two describes used the same statement name %q", name)
	}

	if types, err := pqDescribe(ctx, &describeConn{types: ""}, "SELECT 1"); err != nil || types == nil || len(types) != 0 {
		t.Errorf("no parameters: %#v, %v; want [], nil", types, err)
	}

	none := &describeConn{}
	if _, err := pqDescribe(ctx, none, "CREATE TABLE t (a int)"); !errors.Is(err, errNotDescribable) {
		t.Errorf("DDL: err = %v, want errNotDescribable", err)
	}
	if len(none.sent()) != 0 {
		t.Errorf("DDL was sent: %q", none.sent())
	}
}

func TestPQDescribeErrorPosition(t *testing.T) {
	t.Parallel()
	// The server reports positions in the PREPARE message; the error must
	// point into the caller's SQL.
	prefixLen := len("PREPARE poolsafe_describe_0123456789abcdef AS ")
	dc := &describeConn{err: &pq.Error{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "FORM"`, Position: strconv.Itoa(prefixLen + 10)}}
	_, err := pqDescribe(context.Background(), dc, "SELECT * FORM t")
	var pe *pq.Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *pq.Error", err)
	}
	if pe.Position != "10" {
		t.Errorf("Position = %q, want 10", pe.Position)
	}
	if dc.err.(*pq.Error).Position != strconv.Itoa(prefixLen+10) {
		t.Error("shiftPosition modified the driver's error in place")
	}
}

func TestPQDescribeDoesNotRunOtherStatements(t *testing.T) {
	t.Parallel()
	// pqDescribe splices the caller's SQL into a simple Query message. A
	// query holding several statements then has every statement after the
	// first run by the server at describe time — at Prepare time, or before
	// an Exec with a []byte argument that the extended protocol would refuse.
	const multi = "UPDATE t SET b = $1; DELETE FROM t"
	ctx := context.Background()

	t.Run("pqDescribe", func(t *testing.T) {
		t.Parallel()
		dc := &describeConn{types: "bytea"}
		_, _ = pqDescribe(ctx, dc, multi)
		for _, m := range dc.sent() {
			if strings.Contains(m, "DELETE FROM t") {
				t.Errorf("describe sent a message that runs the second statement: %q", m)
			}
		}
	})
	t.Run("Exec with []byte", func(t *testing.T) {
		t.Parallel()
		dc := &describeConn{types: "bytea"}
		wc := connect(t, dc, ConnectorOptions{Driver: driverPQ})
		_, err := wc.(driver.ExecerContext).ExecContext(ctx, multi, []driver.NamedValue{{Ordinal: 1, Value: []byte("x")}})
		var e *Error
		if !errors.Is(err, errMultipleStatements) || !errors.As(err, &e) || e.SQLState != "42601" {
			t.Errorf("Exec error = %v, want errMultipleStatements as SQLSTATE 42601 (the extended protocol refuses it too, and pgx reports 42601)", err)
		}
		for _, m := range dc.sent() {
			if strings.Contains(m, "DELETE FROM t") {
				t.Errorf("describing the Exec sent a message that runs the second statement: %q", m)
			}
		}
	})
}

func TestDescribeBytesArgs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const q = "INSERT INTO t (b, s, j, n) VALUES ($1, $2, $3, $4)"
	dc := &describeConn{types: "bytea,text,jsonb,integer"}
	wc := connect(t, dc, ConnectorOptions{Driver: driverPQ})
	ec := wc.(driver.ExecerContext)
	args := []driver.NamedValue{
		{Ordinal: 1, Value: []byte{0xff, 0}},
		{Ordinal: 2, Value: []byte("text")},
		{Ordinal: 3, Value: []byte(`{"a":1}`)},
		{Ordinal: 4, Value: int64(4)},
	}
	for range 2 {
		if _, err := ec.ExecContext(ctx, q, args); err != nil {
			t.Fatal(err)
		}
	}
	describes := 0
	for _, m := range dc.sent() {
		if strings.HasPrefix(m, "PREPARE ") {
			describes++
		}
	}
	if describes != 1 {
		t.Errorf("described %d times, want once (then cached): %q", describes, dc.sent())
	}
	if len(dc.execs) != 2 {
		t.Fatalf("%d execs reached the driver, want 2", len(dc.execs))
	}
	want := []any{[]byte{0xff, 0}, "text", `{"a":1}`, int64(4)}
	for i, e := range dc.execs {
		if got := argValues(e); !reflect.DeepEqual(got, want) {
			t.Errorf("exec %d args = %#v, want %#v", i, got, want)
		}
	}
	if !reflect.DeepEqual(args[1].Value, []byte("text")) {
		t.Error("bytesArgs modified the caller's argument slice")
	}

	// No []byte argument: nothing is described.
	plain := &describeConn{types: "text"}
	pc := connect(t, plain, ConnectorOptions{Driver: driverPQ})
	if _, err := pc.(driver.ExecerContext).ExecContext(ctx, "UPDATE t SET s = $1", []driver.NamedValue{{Ordinal: 1, Value: "s"}}); err != nil {
		t.Fatal(err)
	}
	if sent := plain.sent(); len(sent) != 1 || strings.HasPrefix(sent[0], "PREPARE") {
		t.Errorf("sent %q, want only the UPDATE", sent)
	}
}

func TestDescribeAtPrepare(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	dc := &describeConn{types: "text,bytea"}
	wc := connect(t, dc, ConnectorOptions{ClientSidePrepare: true, Driver: driverPQ})
	st, err := wc.(driver.ConnPrepareContext).PrepareContext(ctx, "SELECT $1::text, $2::bytea")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.NumInput(); n != 2 {
		t.Errorf("NumInput = %d, want 2 from describing", n)
	}

	bad := &describeConn{err: &pq.Error{Severity: "ERROR", Code: "42P01", Message: `relation "nope" does not exist`}}
	bc := connect(t, bad, ConnectorOptions{ClientSidePrepare: true, Driver: driverPQ})
	_, err = bc.(driver.ConnPrepareContext).PrepareContext(ctx, "SELECT * FROM nope")
	var e *Error
	if !errors.As(err, &e) || e.SQLState != "42P01" {
		t.Errorf("Prepare of invalid SQL: err = %v, want a classified 42P01", err)
	}
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("error %q does not carry the server's message", err)
	}
}
