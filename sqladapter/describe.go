package sqladapter

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"time"
)

// errNotDescribable: the statement cannot be checked without running it
// (lib/pq can only describe what PREPARE accepts).
var errNotDescribable = errors.New("sqladapter: statement cannot be described")

// errCopyNeedsPQ and errCopyNeedsPrepare: COPY … FROM STDIN streams rows,
// which only lib/pq's statement API does through database/sql.
var (
	errCopyNeedsPQ = errors.New("sqladapter: COPY … FROM STDIN through database/sql needs lib/pq (pq.CopyIn in a transaction); " +
		"with pgx use (*pgx.Conn).CopyFrom through sql.Conn.Raw and sqladapter.Unwrap")
	errCopyNeedsPrepare = errors.New("sqladapter: COPY … FROM STDIN must be prepared inside a transaction " +
		"(tx.Prepare(pq.CopyIn(table, columns...)), then stmt.Exec per row and stmt.Exec() to flush)")
)

// errMultipleStatements: lib/pq cannot describe (or prepare) several
// statements at once.
var errMultipleStatements = errors.New("sqladapter: cannot prepare more than one SQL statement at once (or the SQL has an unterminated quote or comment)")

// multipleStatements is errMultipleStatements as the server reports the
// same mistake to pgx's Prepare — SQLSTATE 42601 — so that both drivers
// fail alike.
func multipleStatements() error {
	return &Error{Kind: KindUnknown, SQLState: "42601", Err: errMultipleStatements,
		Message: "cannot insert multiple commands into a prepared statement (or the SQL has an unterminated quote or comment)"}
}

const (
	describeCacheSize = 1024
	// describeTTL bounds how long a description is trusted: DDL run by
	// other programs can change a statement's parameter types.
	describeTTL = 30 * time.Second
)

// describeCache remembers parameter types per SQL text. DDL or a
// search_path change seen on any of the connector's connections empties
// it, and entries expire after describeTTL, so a statement whose
// parameter types changed is described again.
type describeCache struct {
	mu  sync.Mutex
	m   map[string]describeEntry
	n   int
	now func() time.Time
}

type describeEntry struct {
	types []string
	at    time.Time
}

func newDescribeCache(n int) *describeCache {
	return &describeCache{m: make(map[string]describeEntry), n: n, now: time.Now}
}

func (d *describeCache) get(q string) ([]string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[q]
	if !ok || d.now().Sub(e.at) > describeTTL {
		return nil, false
	}
	return e.types, true
}

func (d *describeCache) put(q string, t []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.m) >= d.n {
		clear(d.m) // simple bound; statements are re-described on demand
	}
	d.m[q] = describeEntry{types: t, at: d.now()}
}

// observe empties the cache before a statement that can change what other
// statements' parameters mean: DDL, or a change of search_path.
// word is query's leadingWord.
func (d *describeCache) observe(query, word string, args []driver.NamedValue) {
	if !changesTypesWord(query, word, args) {
		return
	}
	d.mu.Lock()
	clear(d.m)
	d.mu.Unlock()
}

// describe returns the parameter type names of query (lower case
// PostgreSQL names such as "bytea", "jsonb"; "" when unknown) with one
// self-contained round trip that leaves nothing on the server.
func (c *conn) describe(ctx context.Context, query string) ([]string, error) {
	var (
		types []string
		err   error
	)
	switch c.c.opts.Driver {
	case driverPGX:
		types, err = pgxDescribe(ctx, c.base, query)
	case driverPQ:
		types, err = pqDescribe(ctx, c.base, query)
	default:
		return nil, errNotDescribable
	}
	if err == nil {
		c.c.desc.put(query, types)
	}
	return types, err
}

// cachedDescribe is describe with the connector's cache in front.
func (c *conn) cachedDescribe(ctx context.Context, query string) ([]string, error) {
	if t, ok := c.c.desc.get(query); ok {
		return t, nil
	}
	return c.describe(ctx, query)
}
