package repo

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// DefaultSchema is the schema the repositories and Migrate use unless told
// otherwise.
const DefaultSchema = "public"

// Repos bundles the four repositories over one querier: a *sqladapter.DB,
// a *sqladapter.Tx inside InTx, or any sqlx handle (sqlmock's too).
type Repos struct {
	Profiles *Profiles
	Domains  *Domains
	Jobs     *Jobs
	Batches  *Batches
}

// Option configures the repositories.
type Option func(*options)

type options struct {
	schema string
}

// WithSchema makes every statement name tables in schema (default
// "public"). Statements always name their schema: a transaction pooler
// keeps no search_path between transactions.
func WithSchema(schema string) Option {
	return func(o *options) { o.schema = schema }
}

// New returns the repositories over q.
func New(q sqladapter.Querier, opts ...Option) *Repos {
	b := newBase(q, opts)
	return &Repos{
		Profiles: &Profiles{b},
		Domains:  &Domains{b},
		Jobs:     &Jobs{b},
		Batches:  &Batches{b},
	}
}

// base is what every repository holds.
type base struct {
	q      sqladapter.Querier
	schema string
}

func newBase(q sqladapter.Querier, opts []Option) base {
	o := options{schema: DefaultSchema}
	for _, f := range opts {
		f(&o)
	}
	return base{q: q, schema: o.schema}
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

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, sqladapter.Classify(err))
}

// getRow runs a statement whose first parameter is the tenant and scans
// its one row into a T.
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
