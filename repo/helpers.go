package repo

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// base is what every repository holds: the querier and the schema its
// statements name.
type base struct {
	q      sqladapter.Querier
	schema string
	// backoff is the retry backoff of failed jobs, in milliseconds:
	// base and max (see WithRetryBackoff).
	backoff [2]int64
}

func newBase(q sqladapter.Querier, opts []Option) base {
	o := options{schema: DefaultSchema, backoffBase: RetryBackoffBase, backoffMax: RetryBackoffMax}
	for _, f := range opts {
		f(&o)
	}
	b := max(o.backoffBase.Milliseconds(), 1)
	return base{q: q, schema: o.schema, backoff: [2]int64{b, max(o.backoffMax.Milliseconds(), b)}}
}

// sql returns a statement constant with its {schema} placeholder filled
// in. Results are cached per schema.
func (b base) sql(stmt string) string {
	return render(b.schema, stmt)
}

var rendered sync.Map // [2]string{schema, stmt} → string

func render(schema, stmt string) string {
	key := [2]string{schema, stmt}
	if s, ok := rendered.Load(key); ok {
		return s.(string)
	}
	s := strings.ReplaceAll(stmt, "{schema}", quoteIdent(schema))
	rendered.Store(key, s)
	return s
}

// quoteIdent quotes a PostgreSQL identifier when it needs quoting.
func quoteIdent(s string) string {
	plain := s != ""
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || (i > 0 && c >= '0' && c <= '9')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// wrap says which operation failed, with the error classified.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, sqladapter.Classify(err))
}

// getRow runs a statement whose first parameter is the tenant and scans
// its one row into a T; no row matches sqladapter.ErrNotFound.
func getRow[T any](ctx context.Context, b base, op, stmt string, tenant uuid.UUID, args ...any) (T, error) {
	var v T
	if err := requireTenant(tenant); err != nil {
		return v, err
	}
	if err := b.q.GetContext(ctx, &v, b.sql(stmt), append([]any{tenant}, args...)...); err != nil {
		return v, wrap(op, err)
	}
	return v, nil
}

// exec runs a statement that returns no rows and reports how many rows it
// changed.
func exec(ctx context.Context, b base, op, stmt string, args ...any) (int64, error) {
	res, err := b.q.ExecContext(ctx, b.sql(stmt), args...)
	if err != nil {
		return 0, wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// textArray writes ss as a PostgreSQL text[] literal, for a $n::text[]
// parameter. A string travels the same way through both drivers and
// sqlmock, which rejects []string arguments.
func textArray(ss []string) string {
	var b strings.Builder
	n := 2
	for _, s := range ss {
		n += len(s) + 3
	}
	b.Grow(n)
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if c := s[j]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// txRunner is a querier that runs a function in a transaction of its own
// and commits it: *sqladapter.DB, or a type of yours with the same InTx
// method (a wrapper around one, say). The querier says how to begin.
type txRunner interface {
	InTx(ctx context.Context, fn func(tx *sqladapter.Tx) error, opts ...sqladapter.TxOption) error
}

// txBeginner is a sqlx handle that begins transactions: *sqlx.DB.
type txBeginner interface {
	BeginTxx(ctx context.Context, opts *sql.TxOptions) (*sqlx.Tx, error)
}

// inTx runs fn — a write of several statements — in one READ COMMITTED
// transaction on q:
//
//   - in q itself when q is a transaction (*sqladapter.Tx, *sqlx.Tx); it
//     should be READ COMMITTED too: under REPEATABLE READ or SERIALIZABLE,
//     racing changes fail it with sqladapter.ErrSerialization instead of
//     waiting;
//   - in one of its own through q's InTx (*sqladapter.DB), which retries
//     serialization failures and deadlocks;
//   - in one q begins with BeginTxx (*sqlx.DB).
//
// Any other querier is an error, before anything is sent: fn never runs
// outside a transaction.
func inTx(ctx context.Context, q sqladapter.Querier, fn func(q sqladapter.Querier) error) error {
	switch h := q.(type) {
	case *sqladapter.Tx, *sqlx.Tx:
		return fn(q)
	case txRunner:
		return h.InTx(ctx, func(tx *sqladapter.Tx) error { return fn(tx) },
			sqladapter.WithIsolation(sql.LevelReadCommitted))
	case txBeginner:
		tx, err := h.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	return fmt.Errorf("%T is not a transaction and cannot begin one: this takes several statements in one transaction; "+
		"build the repositories over a *sqladapter.DB (or a type with its InTx method), a *sqlx.DB, "+
		"or a *sqladapter.Tx or *sqlx.Tx", q)
}
