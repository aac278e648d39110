package driverconf

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"

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
// *sql.DB you open over it InTx and Stats:
//
//	c, err := driverconf.NewConnector(cfg)
//	sqlDB := otelsql.OpenDB(c) // or sql.OpenDB(c)
//	db := sqladapter.Wrap(sqlDB)
func NewConnector(cfg Config) (driver.Connector, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
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
	return &connector{Connector: sqladapter.NewConnector(c, r.connectorOptions()), driverConnector: c}, nil
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
	if r.cfg.PoolMode == Transaction {
		// Direct and session connections carry these for the session.
		for _, s := range r.cfg.TxSettings() {
			o.Settings = append(o.Settings, sqladapter.Setting{Name: s[0], Value: s[1]})
		}
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
}

func (c *connector) Driver() driver.Driver { return poolsafeDriver{} }

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

// setConfigSQL builds one statement that applies every setting with
// set_config(name, value, isLocal), so they cost one round trip.
func setConfigSQL(settings [][2]string, isLocal bool) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2*len(settings))
	b.WriteString("SELECT ")
	for i, s := range settings {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "set_config($%d, $%d, %t)", 2*i+1, 2*i+2, isLocal)
		args = append(args, s[0], s[1])
	}
	return b.String(), args
}
