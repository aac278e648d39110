package sqladapter

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/scrapersky/poolsafe/internal/pgdial"
)

// pqFields copies the fields of the first *pq.Error in err's chain.
func pqFields(err error) (serverFields, bool) {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return serverFields{}, false
	}
	return serverFields{
		severity:   pe.Severity,
		message:    pe.Message,
		detail:     pe.Detail,
		hint:       pe.Hint,
		constraint: pe.Constraint,
		table:      pe.Table,
		column:     pe.Column,
		schema:     pe.Schema,
	}, true
}

// Transaction states, as ReadyForQuery reports them.
const (
	txIdle   = 'I'
	txActive = 'T'
	txFailed = 'E'
)

// pqTxStatusField returns lib/pq's conn.txnStatus, which lib/pq keeps from
// every ReadyForQuery but does not export: a pointer into dc, read for as
// long as dc lives (see conn.txStatus). nil when dc has no such field
// (another lib/pq version, another driver).
func pqTxStatusField(dc driver.Conn) *byte {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	sf, ok := v.Elem().Type().FieldByName("txnStatus")
	if !ok || len(sf.Index) != 1 || sf.Type.Kind() != reflect.Uint8 {
		return nil
	}
	return (*byte)(v.Elem().Field(sf.Index[0]).Addr().UnsafePointer())
}

// pqDescribe checks query and reads its parameter types with one simple
// Query message — PREPARE, a look-up in pg_prepared_statements, DEALLOCATE —
// which a pooler runs on one server connection and which leaves nothing
// behind. lib/pq cannot send an unnamed Parse/Describe on its own, and its
// Prepare names statements "1", "2", … that collide through a pooler.
func pqDescribe(ctx context.Context, dc driver.Conn, query string) ([]string, error) {
	if !preparable(query) {
		return nil, errNotDescribable
	}
	if !singleStatement(query) {
		// Spliced into a simple Query message, a second statement would
		// run. A server-side Prepare refuses it too.
		return nil, multipleStatements()
	}
	qc, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, errNotDescribable
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := "poolsafe_describe_" + hex.EncodeToString(rnd[:])
	prefix := "PREPARE " + name + " AS "
	// The newline ends a trailing -- comment in query.
	msg := prefix + query + "\n;SELECT array_to_string(parameter_types::text[], ',') FROM pg_prepared_statements WHERE name = '" +
		name + "';DEALLOCATE " + name
	rows, err := qc.QueryContext(ctx, msg, nil)
	if err != nil {
		return nil, shiftPosition(err, len(prefix))
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		if err == io.EOF {
			return nil, errors.New("sqladapter: describe returned no row")
		}
		return nil, err
	}
	var s string
	switch v := dest[0].(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	}
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, ","), nil
}

// shiftPosition makes a lib/pq error's position point into the caller's
// SQL rather than into the PREPARE wrapped around it.
func shiftPosition(err error, by int) error {
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Position == "" {
		return err
	}
	p, convErr := strconv.Atoi(pe.Position)
	if convErr != nil || p <= by {
		return err
	}
	cp := *pe
	cp.Position = fmt.Sprint(p - by)
	return &cp
}

// pqBeginTx is lib/pq's BeginTx with its BEGIN bounded by ctx. lib/pq
// watches the context only once BEGIN has answered (conn_go18.go: begin,
// then watchCancel), so while the network or the pooler stalls, BeginTx —
// and InTx, BeginTx and every sql.Tx call waiting on the connection —
// returned only when the stall ended, long past the caller's deadline.
// When ctx ends first, the socket is interrupted: the read fails at once,
// lib/pq marks the connection bad and database/sql discards it. And when
// the server answered BEGIN with a FATAL error, that error is returned, as
// pgx does, rather than lib/pq's driver.ErrBadConn. Without the socket
// (wire nil) lib/pq is called as is.
func pqBeginTx(ctx context.Context, wire *pgdial.Conn, bt driver.ConnBeginTx, opts driver.TxOptions) (driver.Tx, error) {
	if wire == nil {
		return bt.BeginTx(ctx, opts)
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, wire.Interrupt)
		defer stop()
	}
	// Interrupted after BEGIN answered, the transaction is returned all the
	// same: lib/pq's own watch, armed with ctx already done, marks the
	// connection bad at once and every later call on it fails.
	before := wire.Written()
	tx, err := bt.BeginTx(ctx, opts)
	if errors.Is(err, driver.ErrBadConn) && wire.Written() != before {
		if fatal := pqServerFatal(wire); fatal != nil {
			return nil, fatal
		}
	}
	return tx, err
}

// pqServerFatal returns the FATAL (or PANIC) error the server sent on the
// connection before closing it, as the *pq.Error lib/pq would have made of
// it: lib/pq parses it and then reports driver.ErrBadConn alone, where pgx
// returns the *pgconn.PgError with the server's message and SQLSTATE
// (PgBouncer's "server login has been failing, try again later
// (server_login_retry)" 08P01, PostgreSQL's "terminating connection due to
// administrator command" 57P01). The socket keeps it (pgdial's
// TrackErrors). nil when there is none or no socket to ask.
func pqServerFatal(wire *pgdial.Conn) *pq.Error {
	if wire == nil {
		return nil
	}
	f := wire.TakeFatal()
	if f == nil {
		return nil
	}
	return &pq.Error{
		Severity:         f.Severity(),
		Code:             pqerror.Code(f['C']),
		Message:          f['M'],
		Detail:           f['D'],
		Hint:             f['H'],
		Position:         f['P'],
		InternalPosition: f['p'],
		InternalQuery:    f['q'],
		Where:            f['W'],
		Schema:           f['s'],
		Table:            f['t'],
		Column:           f['c'],
		DataTypeName:     f['d'],
		Constraint:       f['n'],
		File:             f['F'],
		Line:             f['L'],
		Routine:          f['R'],
	}
}
