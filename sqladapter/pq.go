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
	"sync"

	"github.com/lib/pq"
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

// pqTxStatus reads lib/pq's conn.txnStatus, which lib/pq keeps from every
// ReadyForQuery but does not export. ok is false when this lib/pq version
// has no such field.
func pqTxStatus(dc driver.Conn) (status byte, ok bool) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return 0, false
	}
	e := v.Elem()
	idx, found := pqTxField.Load(e.Type())
	if !found {
		f, has := e.Type().FieldByName("txnStatus")
		i := -1
		if has && f.Type.Kind() == reflect.Uint8 {
			i = f.Index[0]
		}
		pqTxField.Store(e.Type(), i)
		idx = i
	}
	if idx.(int) < 0 {
		return 0, false
	}
	return byte(e.Field(idx.(int)).Uint()), true
}

var pqTxField sync.Map // reflect.Type → index of txnStatus, or -1

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
		return nil, errMultipleStatements
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
