package driverconf

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// DriverName is the name of the database/sql driver this package
// registers: sql.Open("poolsafe", url) opens url through poolsafe, with the
// driver chosen by the URL key driver=pgx|pq (default pgx). Pool sizing
// keys in the URL cannot reach a *sql.DB opened this way: use [Open].
const DriverName = "poolsafe"

func init() {
	sql.Register(DriverName, poolsafeDriver{})
	sqlx.BindDriver(DriverName, sqlx.DOLLAR)
}

// NewConnector returns a pooler-safe driver.Connector for cfg, for callers
// that wrap connectors themselves (otelsql, sqlhooks) before sql.OpenDB. It
// does no network I/O. Pool sizing fields are not part of a connector: apply
// them to the *sql.DB yourself, or use [Open]. [sqladapter.Wrap] gives the
// *sql.DB you open over it InTx and Stats; [sqladapter.WithConnector] gives
// it the connector's counters (Stats counts the queries and errors of its
// connections) and cfg.AcquireTimeout:
//
//	c, err := driverconf.NewConnector(cfg)
//	sqlDB := otelsql.OpenDB(c) // or sql.OpenDB(c)
//	db := sqladapter.Wrap(sqlDB, sqladapter.WithConnector(c))
func NewConnector(cfg Config) (driver.Connector, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	r.metrics = new(sqladapter.Metrics)
	return newConnector(r)
}

func newConnector(r *resolved) (driver.Connector, error) {
	var (
		c   driver.Connector
		err error
	)
	switch r.cfg.Driver {
	case PQ:
		c, err = pqConnector(r)
	default:
		c, err = pgxConnector(r)
	}
	if err != nil {
		return nil, err
	}
	return &connector{Connector: sqladapter.NewConnector(c, r.connectorOptions()), driverConnector: c,
		metrics: r.metrics, acquireTimeout: r.cfg.AcquireTimeout}, nil
}

func (r *resolved) connectorOptions() sqladapter.ConnectorOptions {
	o := sqladapter.ConnectorOptions{
		Driver:            string(r.cfg.Driver),
		ClientSidePrepare: r.cfg.PoolMode == Transaction,
		BehindPooler:      r.cfg.PoolMode != Direct,
		Isolation:         r.cfg.Isolation,
		Logger:            r.cfg.Logger,
		LogArgs:           r.cfg.LogArgs,
		SlowQuery:         r.cfg.SlowQuery,
		Metrics:           r.metrics,
	}
	var settings []sqladapter.Setting
	for _, s := range r.cfg.TxSettings() {
		settings = append(settings, sqladapter.Setting{Name: s[0], Value: s[1]})
	}
	switch r.cfg.PoolMode {
	case Transaction:
		o.Settings = settings // per transaction: the session is shared
	case Session:
		o.SessionSettings = settings // once per connection: a pooler refuses them at startup
	}
	return o
}

// Open returns a [sqladapter.DB] for cfg: pooler-safe connections, pool
// settings applied, and InTx transactions that use cfg's isolation level
// and (in transaction mode) apply its server settings per transaction. It
// does no network I/O: the first query (or db.PingContext) connects.
func Open(cfg Config) (*sqladapter.DB, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	r.metrics = new(sqladapter.Metrics)
	replicas, err := openReplicas(r)
	if err != nil {
		return nil, err
	}
	db, err := openDB(r)
	if err != nil {
		for _, rep := range replicas {
			rep.DB.Close()
		}
		return nil, err
	}
	return sqladapter.Wrap(db,
		sqladapter.WithMetrics(r.metrics),
		sqladapter.WithAcquireTimeout(r.cfg.AcquireTimeout),
		sqladapter.WithReplicas(sqladapter.ReplicaOptions{MaxLag: r.cfg.ReplicaMaxLag, Wait: r.cfg.ReplicaWait}, replicas...)), nil
}

// openReplicas opens a handle per replica, each with the pool mode of its
// own URL (see Config.ReplicaURLs) and the primary's pool settings.
func openReplicas(r *resolved) ([]sqladapter.Replica, error) {
	cfgs, err := r.cfg.replicas()
	if err != nil {
		return nil, err
	}
	var out []sqladapter.Replica
	for _, c := range cfgs {
		rr, err := c.resolve()
		if err == nil {
			rr.metrics = new(sqladapter.Metrics) // the primary's Stats count the primary's queries
			var db *sql.DB
			if db, err = openDB(rr); err == nil {
				out = append(out, sqladapter.Replica{Name: RedactURL(c.URL),
					DB: sqladapter.Wrap(db, sqladapter.WithMetrics(rr.metrics), sqladapter.WithAcquireTimeout(c.AcquireTimeout))})
				continue
			}
		}
		for _, rep := range out {
			rep.DB.Close()
		}
		return nil, fmt.Errorf("replica %s: %w", RedactURL(c.URL), err)
	}
	return out, nil
}

func openDB(r *resolved) (*sql.DB, error) {
	c, err := newConnector(r)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(r.cfg.MaxOpenConns)
	db.SetMaxIdleConns(r.cfg.MaxIdleConns)
	db.SetConnMaxLifetime(r.cfg.ConnMaxLifetime)
	db.SetConnMaxIdleTime(r.cfg.ConnMaxIdleTime)
	return db, nil
}

// connector reports the poolsafe driver as its driver.
type connector struct {
	driver.Connector                  // the sqladapter wrapper
	driverConnector  driver.Connector // the driver's own, inside it
	metrics          *sqladapter.Metrics
	acquireTimeout   time.Duration
}

func (c *connector) Driver() driver.Driver { return poolsafeDriver{} }

// Metrics returns the counters of the connector's connections, for
// sqladapter.WithConnector.
func (c *connector) Metrics() *sqladapter.Metrics { return c.metrics }

// AcquireTimeout returns Config.AcquireTimeout, for
// sqladapter.WithConnector.
func (c *connector) AcquireTimeout() time.Duration { return c.acquireTimeout }

// poolsafeDriver is the "poolsafe" database/sql driver.
type poolsafeDriver struct{}

func (poolsafeDriver) Open(name string) (driver.Conn, error) {
	c, err := poolsafeDriver{}.OpenConnector(name)
	if err != nil {
		return nil, err
	}
	return c.Connect(context.Background())
}

func (poolsafeDriver) OpenConnector(name string) (driver.Connector, error) {
	cfg, err := Parse(name)
	if err != nil {
		return nil, err
	}
	if k := cfg.src.poolKey(); k != "" {
		return nil, fieldErr(k, "sizes the pool, which sql.Open(%q, url) cannot reach; remove it and call "+
			"db.SetMaxOpenConns & co. on the *sql.DB, or open with driverconf.Open, which applies it", DriverName)
	}
	return NewConnector(cfg)
}
