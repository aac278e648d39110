package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/internal/pgdial"
)

// The values of ConnectorOptions.Driver (driverconf.PGX and driverconf.PQ).
const (
	driverPGX = "pgx"
	driverPQ  = "pq"
)

// ConnectorOptions configure [NewConnector]. Everything a configuration
// asks of a connection lives here, so every handle opened over the
// connector — sql.OpenDB, sqlx, [Wrap] — behaves the same.
type ConnectorOptions struct {
	// Driver is the underlying driver, "pgx" or "pq". It selects
	// how statements are described (for Prepare-time checks and []byte
	// arguments) and how a connection's transaction state is read. Empty
	// means unknown: no describing, values are still normalised. Defaults
	// to "".
	Driver string

	// ClientSidePrepare makes Prepare return a statement that only
	// remembers its SQL and runs it through the connection's
	// QueryContext/ExecContext: no named statement ever reaches the server.
	// Required behind a transaction pooler. The SQL is still checked at
	// Prepare time with one self-contained round trip. Defaults to false
	// (Prepare goes to the driver).
	ClientSidePrepare bool

	// BehindPooler says a pooler (session or transaction mode) is in
	// front of PostgreSQL. lib/pq then sends no CancelRequest when a
	// context ends mid-statement (PgBouncer 1.18 can exit on one): the
	// statement's own connection is closed instead, as pgx does when
	// driverconf sets it up. Defaults to false.
	BehindPooler bool

	// Isolation is the isolation level of transactions begun with
	// sql.LevelDefault. Defaults to sql.LevelDefault (the server's).
	Isolation sql.IsolationLevel

	// SessionSettings are server settings applied once on every new
	// connection with set_config(name, value, false): for a connection
	// whose session is the client's own (a session pooler, where they
	// cannot be startup parameters). Defaults to none.
	SessionSettings []Setting

	// Settings are server settings applied with set_config(name, value,
	// true) at the start of every transaction, and around every statement
	// run outside one (which then runs in a transaction of its own: three
	// more round trips). Statements PostgreSQL refuses inside a
	// transaction block (VACUUM, CREATE INDEX CONCURRENTLY, …), and CALL
	// and DO, whose procedure or block may COMMIT, run outside one as they
	// are, without these settings: give them the settings in a
	// transaction, or on the role. Use Settings where the settings cannot
	// be startup parameters — behind a transaction pooler. Defaults to
	// none.
	Settings []Setting

	// LogArgs includes query arguments in log records. Defaults to false:
	// arguments are redacted.
	LogArgs bool

	// Logger receives failed queries (level Warn) and queries slower than
	// SlowQuery (level Info). Defaults to nil: no logging.
	Logger *slog.Logger

	// Metrics counts queries and errors. Defaults to nil: no counting.
	Metrics *Metrics

	// SlowQuery is the duration above which a query is logged. Defaults
	// to 0: slow queries are not logged.
	SlowQuery time.Duration
}

// NewConnector wraps a driver.Connector so that every connection it makes
// normalises values across drivers, classifies errors, never lets
// database/sql re-send a statement that may have run, applies the
// configured settings and isolation level, and — with ClientSidePrepare —
// prepares statements client-side. A *pq.Connector gets a dialer of the
// wrapper's (it counts the bytes sent, and intercepts cancel requests
// when BehindPooler is set).
func NewConnector(c driver.Connector, opts ConnectorOptions) driver.Connector {
	if pc, ok := c.(interface{ Dialer(pq.Dialer) }); ok { // a *pq.Connector, or one wrapping it
		pc.Dialer(pgdial.New(opts.BehindPooler).TrackErrors())
	}
	ct := &connector{base: c, opts: opts, desc: newDescribeCache(describeCacheSize)}
	ct.setSQL, ct.setArgs = setConfigSQL(opts.Settings, true)
	ct.sessionSQL, ct.sessionArgs = setConfigSQL(opts.SessionSettings, false)
	return ct
}

type connector struct {
	base driver.Connector
	opts ConnectorOptions
	desc *describeCache

	setSQL  string // applies opts.Settings; "" when there are none
	setArgs []driver.NamedValue

	sessionSQL  string // applies opts.SessionSettings; "" when there are none
	sessionArgs []driver.NamedValue
}

// Metrics returns the counters of ConnectorOptions.Metrics, nil when
// there are none (see [WithConnector]).
func (c *connector) Metrics() *Metrics { return c.opts.Metrics }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	acquired(ctx) // a new connection is being made for this call
	sctx, slot := pgdial.WithSlot(ctx)
	dc, err := c.base.Connect(sctx)
	if err != nil {
		return nil, connectError(ctx, err) // nothing was sent: InTx may retry
	}
	if _, ok := dc.(driver.ExecerContext); !ok {
		dc.Close()
		return nil, fmt.Errorf("sqladapter: driver connection %T does not implement driver.ExecerContext", dc)
	}
	if _, ok := dc.(driver.QueryerContext); !ok {
		dc.Close()
		return nil, fmt.Errorf("sqladapter: driver connection %T does not implement driver.QueryerContext", dc)
	}
	pgxRegisterTypes(dc)
	if c.sessionSQL != "" {
		if _, err := dc.(driver.ExecerContext).ExecContext(ctx, c.sessionSQL, c.sessionArgs); err != nil {
			dc.Close()
			return nil, fmt.Errorf("sqladapter: apply session settings: %w", driverError(ctx, err))
		}
	}
	return wrapConn(newConn(dc, c, slot.Conn)), nil
}

func (c *connector) Driver() driver.Driver { return c.base.Driver() }

// Unwrap returns the driver's own connection under a connection made by
// [NewConnector] — also beneath wrappers with a Raw method, such as
// otelsql's — for use inside sql.Conn.Raw, for example to reach
// pgx's *stdlib.Conn and its CopyFrom. Anything else is returned as is.
//
//	err := sqlConn.Raw(func(dc any) error {
//		pc := sqladapter.Unwrap(dc).(*stdlib.Conn).Conn()
//		_, err := pc.CopyFrom(ctx, table, cols, src)
//		return err
//	})
func Unwrap(driverConn any) any {
	// Connection wrappers such as otelsql's expose the connection they
	// wrap with Raw.
	for range 8 {
		r, ok := driverConn.(interface{ Raw() driver.Conn })
		if !ok {
			break
		}
		driverConn = r.Raw()
	}
	if u, ok := driverConn.(interface{ unwrapConn() driver.Conn }); ok {
		return u.unwrapConn()
	}
	return driverConn
}
