package driverconf

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/lib/pq"
)

// pqConnector builds a lib/pq connector for r. It always sets
// binary_parameters, so a query with arguments is one round trip with the
// unnamed statement (lib/pq's default would Parse/Describe/Sync first, and
// through a transaction pooler the second half can reach another server
// connection).
func pqConnector(r *resolved) (driver.Connector, error) {
	pc, err := pq.NewConfig(r.dsn())
	if err != nil {
		return nil, fieldErr("URL", "rejected by lib/pq: %s", r.scrub(err.Error()))
	}
	pc.BinaryParameters = true
	if pc.Runtime == nil {
		pc.Runtime = map[string]string{}
	}
	switch r.cfg.PoolMode {
	case Transaction, Session:
		// Poolers refuse startup parameters they do not track.
		pc.Options = ""
		clear(pc.Runtime)
	case Direct:
		for _, s := range r.startupSettings() {
			pc.Runtime[s[0]] = s[1]
		}
	}
	c, err := pq.NewConnectorConfig(pc)
	if err != nil {
		return nil, fieldErr("URL", "rejected by lib/pq: %s", r.scrub(err.Error()))
	}
	if r.cfg.PoolMode == Session {
		if settings := r.startupSettings(); len(settings) > 0 {
			q, args := setConfigSQL(settings, false)
			return &afterConnect{Connector: c, query: q, args: args}, nil
		}
	}
	return c, nil
}

// afterConnect runs one statement on every new connection.
type afterConnect struct {
	driver.Connector
	query string
	args  []any
}

// Dialer sets the dialer of the lib/pq connector inside, so that
// sqladapter.NewConnector gives it its own (byte counting, no
// CancelRequest through a pooler) as it does to a bare *pq.Connector.
func (a *afterConnect) Dialer(d pq.Dialer) {
	if pc, ok := a.Connector.(*pq.Connector); ok {
		pc.Dialer(d)
	}
}

func (a *afterConnect) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := a.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("driverconf: driver connection %T cannot execute session settings", conn)
	}
	named := make([]driver.NamedValue, len(a.args))
	for i, v := range a.args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	if _, err := ex.ExecContext(ctx, a.query, named); err != nil {
		conn.Close()
		return nil, fmt.Errorf("driverconf: apply session settings: %w", err)
	}
	return conn, nil
}
