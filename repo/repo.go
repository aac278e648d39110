package repo

import (
	"time"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// DefaultSchema is the schema the repositories and Migrate use unless told
// otherwise.
const DefaultSchema = "public"

// Repos bundles the four repositories over one querier: a *sqladapter.DB,
// a *sqladapter.Tx inside InTx, or any sqlx handle (sqlmock's too).
//
// Every method is one statement, except [Batches.Reconcile], which needs a
// transaction for its two: it runs its own on a querier that can begin one
// (an InTx method like *sqladapter.DB's, or BeginTxx like *sqlx.DB's),
// joins the one q is (*sqladapter.Tx, *sqlx.Tx), and fails on any other
// querier rather than run without one.
type Repos struct {
	Profiles *Profiles
	Domains  *Domains
	Jobs     *Jobs
	Batches  *Batches
}

// Option configures the repositories.
type Option func(*options)

type options struct {
	schema                  string
	backoffBase, backoffMax time.Duration
}

// WithSchema makes every statement name tables in schema (default
// "public"). Statements always name their schema: a transaction pooler
// keeps no search_path between transactions.
func WithSchema(schema string) Option {
	return func(o *options) { o.schema = schema }
}

// WithRetryBackoff sets the retry backoff of [Jobs.Fail] and [Jobs.Next]:
// attempt a that fails with attempts left is retried after min(base·2^(a−1),
// max), scaled by a random factor in [0.5, 1). Defaults to
// [RetryBackoffBase] and [RetryBackoffMax]; a demo or a test may want
// milliseconds. Values below 1ms count as 1ms, and max is at least base.
func WithRetryBackoff(base, max time.Duration) Option {
	return func(o *options) {
		o.backoffBase, o.backoffMax = base, max
	}
}

// New returns the repositories over q. It is cheap: to send a request's
// list and get calls to a read replica, build repositories over
// db.Reader(ctx) for that request (with a sqladapter.ReadYourWrites context
// when they must see the request's own writes), and keep writes on db:
//
//	ctx = sqladapter.ReadYourWrites(ctx)
//	p, err := repo.New(db).Profiles.Update(ctx, tenant, id, change)
//	page, err := repo.New(db.Reader(ctx)).Profiles.List(ctx, tenant, repo.Page{Limit: 50})
func New(q sqladapter.Querier, opts ...Option) *Repos {
	b := newBase(q, opts)
	return &Repos{
		Profiles: &Profiles{b},
		Domains:  &Domains{b},
		Jobs:     &Jobs{b},
		Batches:  &Batches{b},
	}
}
