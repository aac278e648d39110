package sqladapter

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgxFields copies the fields of the first *pgconn.PgError in err's chain.
func pgxFields(err error) (serverFields, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return serverFields{}, false
	}
	severity := pe.SeverityUnlocalized
	if severity == "" {
		severity = pe.Severity // PgBouncer sends only the localized one
	}
	return serverFields{
		severity:   severity,
		message:    pe.Message,
		detail:     pe.Detail,
		hint:       pe.Hint,
		constraint: pe.ConstraintName,
		table:      pe.TableName,
		column:     pe.ColumnName,
		schema:     pe.SchemaName,
	}, true
}

// pgxTimeout reports a pgconn timeout: a context deadline or a network
// timeout inside pgconn.
func pgxTimeout(err error) bool { return pgconn.Timeout(err) }

// pgxConnection reports pgx's own connection failures: a failed connection
// attempt, an operation on a closed connection, or an error pgconn reports
// as raised before anything was sent.
func pgxConnection(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}

// pgxDescribe sends an unnamed Parse/Describe/Sync: one self-contained
// round trip; the unnamed statement is replaced by the next Parse on that
// server connection, whoever sends it.
func pgxDescribe(ctx context.Context, dc driver.Conn, query string) ([]string, error) {
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		return nil, errNotDescribable
	}
	pc := sc.Conn()
	sd, err := pc.PgConn().Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, err
	}
	types := make([]string, len(sd.ParamOIDs))
	for i, oid := range sd.ParamOIDs {
		if t, ok := pc.TypeMap().TypeForOID(oid); ok {
			types[i] = t.Name
		}
	}
	return types, nil
}

// pgxNotSent reports a pgx error raised before anything was sent: a failed
// connection attempt, or one pgconn marks safe to retry.
func pgxNotSent(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

// simpleProtocol asks pgx for the simple protocol on one query.
var simpleProtocol = []driver.NamedValue{{Ordinal: 1, Value: pgx.QueryExecModeSimpleProtocol}}

// pgxSimpleWithoutArgs sends a query without arguments the way lib/pq
// does, in one simple Query message, so that several statements separated
// by semicolons run on both drivers (pgx's extended protocol refuses them).
// The results are text either way.
func pgxSimpleWithoutArgs(drv string, args []driver.NamedValue) []driver.NamedValue {
	if drv == driverPGX && len(args) == 0 {
		return simpleProtocol
	}
	return args
}
