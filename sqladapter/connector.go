package sqladapter

import (
	"context"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"time"
)

// Driver names accepted in [ConnectorOptions].Driver.
const (
	DriverPGX = "pgx"
	DriverPQ  = "pq"
)

// ConnectorOptions configure [NewConnector].
type ConnectorOptions struct {
	// ClientSidePrepare makes Prepare return a statement that only
	// remembers its SQL and runs it through the connection's
	// QueryContext/ExecContext: no named statement ever reaches the server.
	// Required behind a transaction pooler. The SQL is still checked at
	// Prepare time with one self-contained round trip. Defaults to false
	// (Prepare goes to the driver).
	ClientSidePrepare bool

	// Driver is the underlying driver, DriverPGX or DriverPQ. It selects
	// how statements are described (for Prepare-time checks and []byte
	// arguments). Empty means unknown: no describing, values are still
	// normalised. Defaults to "".
	Driver string

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
// normalises values across drivers, classifies errors, and — with
// ClientSidePrepare — prepares statements client-side.
func NewConnector(c driver.Connector, opts ConnectorOptions) driver.Connector {
	return &connector{base: c, opts: opts, desc: newDescribeCache(describeCacheSize)}
}

type connector struct {
	base driver.Connector
	opts ConnectorOptions
	desc *describeCache
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	disarmAcquire(ctx) // a new connection is being made for this call
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, ClassifyContext(ctx, err)
	}
	if _, ok := dc.(driver.ExecerContext); !ok {
		dc.Close()
		return nil, fmt.Errorf("sqladapter: driver connection %T does not implement driver.ExecerContext", dc)
	}
	if _, ok := dc.(driver.QueryerContext); !ok {
		dc.Close()
		return nil, fmt.Errorf("sqladapter: driver connection %T does not implement driver.QueryerContext", dc)
	}
	return wrapConn(&conn{base: dc, c: c}), nil
}

func (c *connector) Driver() driver.Driver { return c.base.Driver() }

// Unwrap returns the driver's own connection under a connection made by
// [NewConnector], for use inside sql.Conn.Raw — for example to reach
// pgx's *stdlib.Conn and its CopyFrom. Anything else is returned as is.
//
//	err := sqlConn.Raw(func(dc any) error {
//		pc := sqladapter.Unwrap(dc).(*stdlib.Conn).Conn()
//		_, err := pc.CopyFrom(ctx, table, cols, src)
//		return err
//	})
func Unwrap(driverConn any) any {
	if u, ok := driverConn.(interface{ unwrapConn() driver.Conn }); ok {
		return u.unwrapConn()
	}
	return driverConn
}
