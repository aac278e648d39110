package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"time"

	"github.com/jmoiron/sqlx"
)

// Querier is what repositories need: satisfied by *DB, *Tx, *sqlx.DB and
// *sqlx.Tx, so the same code runs in or out of a transaction and under
// sqlmock.
type Querier interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	NamedExecContext(ctx context.Context, query string, arg any) (sql.Result, error)
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
	_ Querier = (*sqlx.DB)(nil)
	_ Querier = (*sqlx.Tx)(nil)
)

// Setting is a server setting (GUC) applied inside a transaction with
// set_config(Name, Value, true).
type Setting struct {
	Name, Value string
}

// DB is a sqlx handle with poolsafe's transaction helpers, its counters
// and the acquire timeout.
type DB struct {
	*sqlx.DB
	metrics        *Metrics
	acquireTimeout time.Duration
	replicas       *replicaSet // nil without replicas
}

type dbOptions struct {
	metrics        *Metrics
	acquireTimeout time.Duration
	replicas       *replicaSet
}

// Option configures [Wrap].
type Option func(*dbOptions)

// WithMetrics shares counters with a connector made by [NewConnector], so
// [DB.Stats] reports them. Defaults to counters of the DB's own (tx
// retries only).
func WithMetrics(m *Metrics) Option {
	return func(o *dbOptions) { o.metrics = m }
}

// WithConnector takes the counters and the acquire timeout of the
// connector the *sql.DB was opened over — one made by [NewConnector] or
// driverconf.NewConnector, or one that wraps it and offers the same
// methods — so that [DB.Stats] counts its connections' queries and
// errors, and calls wait for a free connection as long as its
// configuration says. Options given after it override what it sets.
// Other connectors set nothing.
func WithConnector(c driver.Connector) Option {
	return func(o *dbOptions) {
		if m, ok := c.(interface{ Metrics() *Metrics }); ok && m.Metrics() != nil {
			o.metrics = m.Metrics()
		}
		if a, ok := c.(interface{ AcquireTimeout() time.Duration }); ok {
			o.acquireTimeout = a.AcquireTimeout()
		}
	}
}

// WithAcquireTimeout bounds how long a call waits for a free connection
// when the pool is at its limit, separately from the call's own context:
// the call then fails with an error matching [ErrTimeout] and
// context.DeadlineExceeded. It needs connections made by [NewConnector]
// (driverconf.Open sets it from Config.AcquireTimeout); with other
// connections it would also cut calls short, so do not use it there.
// Defaults to 0: wait as long as the call's context allows.
func WithAcquireTimeout(d time.Duration) Option {
	return func(o *dbOptions) { o.acquireTimeout = d }
}

// bindName is the driver name *DB reports to sqlx: its bindvars are $1, $2….
const bindName = "poolsafe"

func init() { sqlx.BindDriver(bindName, sqlx.DOLLAR) }

// Wrap returns a *DB over a *sql.DB you opened yourself: through
// sql.OpenDB(driverconf.NewConnector(cfg)) — perhaps wrapped by a tracing
// library — or sqlmock's in tests. driverconf.Open returns one ready-made.
// sqlx binds its parameters as $1, $2….
func Wrap(db *sql.DB, opts ...Option) *DB {
	var o dbOptions
	for _, f := range opts {
		f(&o)
	}
	if o.metrics == nil {
		o.metrics = new(Metrics)
	}
	if o.acquireTimeout > 0 {
		acquireTimeouts.Store(true)
	}
	h := &DB{DB: sqlx.NewDb(db, bindName), metrics: o.metrics, acquireTimeout: o.acquireTimeout, replicas: o.replicas}
	if h.replicas != nil {
		h.replicas.start()
	}
	return h
}

// Stats returns the pool's statistics and poolsafe's counters, with the
// replicas' states when there are replicas.
func (db *DB) Stats() Stats {
	st := db.metrics.snapshot(db.DB.Stats())
	if db.replicas != nil {
		st.Replicas = db.replicas.stats()
		st.PrimaryReads = db.replicas.primaryReads.Load()
	}
	return st
}

// Close closes the database and its replicas' handles.
func (db *DB) Close() error {
	err := db.DB.Close()
	if db.replicas != nil {
		if rerr := db.replicas.close(); err == nil {
			err = rerr
		}
	}
	return err
}
