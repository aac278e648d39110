//go:build unix

package sqladapter_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// TestWithConnector: a DB wrapped over a connector of NewConnector's counts
// its connections' queries in Stats only with WithConnector; a later
// option overrides it; a connector without counters sets nothing.
func TestWithConnector(t *testing.T) {
	t.Parallel()
	m := new(sqladapter.Metrics)
	c := sqladapter.NewConnector(&fakeConnector{}, sqladapter.ConnectorOptions{Driver: "pq", Metrics: m})
	query := func(db *sqladapter.DB) {
		t.Helper()
		var n int64
		if err := db.QueryRowContext(context.Background(), "SELECT $1::int8 + 1", int64(1)).Scan(&n); err != nil || n != 2 {
			t.Fatalf("query: %d, %v", n, err)
		}
	}
	// counted reads m through a handle that shares it.
	counted := func() int64 {
		probe := sqladapter.Wrap(sql.OpenDB(&fakeConnector{}), sqladapter.WithMetrics(m))
		defer probe.Close()
		return probe.Stats().Queries
	}
	for _, tc := range []struct {
		name string
		opts []sqladapter.Option
		want int64 // Stats().Queries after this DB's one query
	}{
		{"WithConnector", []sqladapter.Option{sqladapter.WithConnector(c)}, 1},
		{"without", nil, 0},
		{"overridden", []sqladapter.Option{sqladapter.WithConnector(c), sqladapter.WithMetrics(new(sqladapter.Metrics))}, 0},
		{"no counters", []sqladapter.Option{sqladapter.WithConnector(&fakeConnector{})}, 0},
	} {
		before := counted()
		db := sqladapter.Wrap(sql.OpenDB(c), tc.opts...)
		query(db)
		if got := db.Stats().Queries; got != tc.want {
			t.Errorf("%s: Stats().Queries = %d, want %d", tc.name, got, tc.want)
		}
		if got := counted() - before; got != 1 {
			t.Errorf("%s: the connector counted %d queries, want 1", tc.name, got)
		}
		db.Close()
	}
}
