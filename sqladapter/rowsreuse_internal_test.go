package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"testing"
)

// seqConn answers every query with the rows n and n+1, n its argument;
// several results may be open at once.
type seqConn struct{ fakeConn }

func (c *seqConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	n := args[0].Value.(int64)
	return &fakeRows{cols: []string{"n"}, data: [][]driver.Value{{n}, {n + 1}}}, nil
}

// A connection reuses the rows of its last query once they are closed,
// and only then.
func TestRowsReusedOnlyOnceClosed(t *testing.T) {
	ctx := context.Background()
	wc := connect(t, &seqConn{fakeConn{log: &callLog{}}}, ConnectorOptions{})
	q := wc.(driver.QueryerContext)
	query := func(n int64) *rows {
		t.Helper()
		r, err := q.QueryContext(ctx, "q", []driver.NamedValue{{Ordinal: 1, Value: n}})
		if err != nil {
			t.Fatal(err)
		}
		return r.(*rows)
	}
	a := query(10)
	b := query(20) // a still open
	if a == b {
		t.Fatal("an open result's rows were reused")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c := query(30)
	if c != b {
		t.Error("the last query's closed rows were not reused")
	}
	dest := make([]driver.Value, 1)
	for _, want := range []int64{10, 11} { // a is untouched by b and c
		if err := a.Next(dest); err != nil || dest[0] != want {
			t.Fatalf("a: %v, %v; want %d", dest[0], err, want)
		}
	}
	for _, want := range []int64{30, 31} {
		if err := c.Next(dest); err != nil || dest[0] != want {
			t.Fatalf("c: %v, %v; want %d", dest[0], err, want)
		}
	}
	if err := c.Next(dest); err != io.EOF {
		t.Fatalf("c after its rows: %v, want io.EOF", err)
	}
}

// Through database/sql: a closed *sql.Rows whose driver rows now serve
// the next query neither sees nor disturbs that query.
func TestClosedRowsIsolatedFromReuse(t *testing.T) {
	ctx := context.Background()
	db := sql.OpenDB(NewConnector(&fakeConnector{newConn: func() driver.Conn { return &seqConn{fakeConn{log: &callLog{}}} }}, ConnectorOptions{}))
	defer db.Close()
	db.SetMaxOpenConns(1)
	first, err := db.QueryContext(ctx, "q", int64(10))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := db.QueryContext(ctx, "q", int64(20)) // the same connection, its rows reused
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if first.Next() {
		t.Error("a closed sql.Rows has a row")
	}
	if _, err := first.Columns(); err == nil {
		t.Error("a closed sql.Rows has columns")
	}
	if err := first.Close(); err != nil {
		t.Errorf("closing a closed sql.Rows again: %v", err)
	}
	var got []int64
	for second.Next() {
		var n int64
		if err := second.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := second.Err(); err != nil || len(got) != 2 || got[0] != 20 || got[1] != 21 {
		t.Errorf("second query: %v, %v; want [20 21]", got, err)
	}
}
