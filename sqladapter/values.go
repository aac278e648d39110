package sqladapter

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"time"
)

// normaliseArg rewrites the Go argument types the two drivers would send
// differently (see the table in the package documentation). A
// driver.Valuer is resolved here, as database/sql does for lib/pq, so that
// what it returns — JSON in a []byte, a time, a NULL — is treated like the
// same value passed directly. So is a pointer, as database/sql does for
// lib/pq: its value is sent, or NULL for a nil pointer — pgx alone cannot
// send a *any, or a pointer to a pointer, at all.
func normaliseArg(nv *driver.NamedValue) error {
	switch nv.Value.(type) {
	case nil, string, int64, int, int32, int16, int8, uint64, uint, uint32, uint16, uint8, float64, float32, bool:
		return nil // no methods, no pointer, nothing to rewrite: the common case, without reflection
	}
	for range maxDerefs {
		if v, ok := nv.Value.(driver.Valuer); ok && !nativeArg(nv.Value) {
			val, err := callValuer(v)
			if err != nil {
				return fmt.Errorf("sqladapter: argument $%d: %T.Value: %w", nv.Ordinal, nv.Value, err)
			}
			nv.Value = val
			break
		}
		rv := reflect.ValueOf(nv.Value)
		if rv.Kind() != reflect.Pointer || nativeArg(nv.Value) {
			break
		}
		if rv.IsNil() {
			nv.Value = nil
			break
		}
		nv.Value = rv.Elem().Interface()
	}
	switch v := nv.Value.(type) {
	case []byte:
		if v == nil {
			nv.Value = nil // a nil slice is NULL, as the raw drivers send it
		}
	case json.RawMessage:
		if v == nil {
			nv.Value = nil
		} else {
			nv.Value = string(v)
		}
	case *json.RawMessage:
		if v == nil || *v == nil {
			nv.Value = nil
		} else {
			nv.Value = string(*v)
		}
	case time.Time:
		nv.Value = v.UTC()
	case *time.Time:
		if v == nil {
			nv.Value = nil
		} else {
			nv.Value = v.UTC()
		}
	case time.Duration:
		nv.Value = formatInterval(v)
	case *time.Duration:
		if v == nil {
			nv.Value = nil
		} else {
			nv.Value = formatInterval(*v)
		}
	}
	return nil
}

// nativeArg reports values normalised below as they are: the Valuer, or
// the pointer, is left to that.
func nativeArg(v any) bool {
	switch v.(type) {
	case json.RawMessage, *json.RawMessage, *time.Time, *time.Duration:
		return true
	}
	return false
}

// maxDerefs bounds how many pointers an argument is unwrapped through (a
// pointer type can point to itself: type P *P).
const maxDerefs = 8

// callValuer is database/sql's rule: a nil pointer whose Value method has
// a value receiver is NULL rather than a panic.
func callValuer(v driver.Valuer) (driver.Value, error) {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() &&
		rv.Type().Elem().Implements(valuerType) {
		return nil, nil
	}
	return v.Value()
}

var valuerType = reflect.TypeFor[driver.Valuer]()

// formatInterval writes d as a PostgreSQL interval literal.
func formatInterval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// bytesArgs sends each []byte argument as text unless its parameter is
// bytea, so that JSON in a []byte reaches json/jsonb columns, text columns
// get the text and bytea columns the bytes — whatever the driver. The
// parameter types come from describing the statement (see describeCache).
// A statement the server cannot describe fails here with the server's
// error, as it would when run: inside a transaction the failed describe
// has aborted the transaction, so the statement must not be sent.
func (c *conn) bytesArgs(ctx context.Context, query string, args []driver.NamedValue) ([]driver.NamedValue, error) {
	has := false
	for _, a := range args {
		if _, ok := a.Value.([]byte); ok {
			has = true
			break
		}
	}
	if !has || c.c.opts.Driver == "" {
		return args, nil
	}
	types, err := c.cachedDescribe(ctx, query)
	if errors.Is(err, errNotDescribable) {
		return args, nil
	}
	if err != nil {
		return nil, err
	}
	var out []driver.NamedValue
	for i, a := range args {
		b, ok := a.Value.([]byte)
		if !ok || a.Ordinal-1 >= len(types) || types[a.Ordinal-1] == "bytea" || types[a.Ordinal-1] == "" {
			continue
		}
		if out == nil {
			out = append([]driver.NamedValue(nil), args...)
		}
		out[i].Value = string(b)
	}
	if out == nil {
		return args, nil
	}
	return out, nil
}

// Column kinds that need normalising on the way out.
const (
	colOther     = iota
	colBinary    // bytea, json, jsonb, xml: []byte on both drivers
	colTimeOfDay // time: "15:04:05.999999"
	colTimeTZ    // timetz: "15:04:05.999999-07", as PostgreSQL writes it
	colFloat4
)

// formatTimeOfDay writes lib/pq's time of day (a time.Time on 1 January of
// year 0, in its own zone) the way PostgreSQL and pgx write it:
// "15:04:05.999999", and "24:00:00" — which lib/pq reads as midnight on
// 2 January — rather than "00:00:00".
func formatTimeOfDay(v time.Time) string {
	if v.Day() == 2 && v.Hour() == 0 && v.Minute() == 0 && v.Second() == 0 && v.Nanosecond() == 0 {
		return "24:00:00"
	}
	return v.Format("15:04:05.999999")
}

// formatOffset writes v's zone offset as PostgreSQL does for timetz: "+04",
// "-04:30", "+04:01:02".
func formatOffset(v time.Time) string {
	_, off := v.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b := fmt.Appendf([]byte{sign}, "%02d", off/3600)
	if off%3600 != 0 {
		b = fmt.Appendf(b, ":%02d", off%3600/60)
		if off%60 != 0 {
			b = fmt.Appendf(b, ":%02d", off%60)
		}
	}
	return string(b)
}

// rows normalises values on the way out: every time.Time in UTC, time of
// day as "15:04:05.999999" (time) or with its offset (timetz), float4 as the shortest decimal that reads back
// as the same float4, and every text-like value a string. When the
// statement ran in a transaction of its own (see ConnectorOptions.Settings),
// Close ends that transaction.
type rows struct {
	base   driver.Rows
	ctx    context.Context
	kinds  []int
	tx     driver.Tx // the statement's own transaction, or nil
	failed bool      // Next returned an error other than io.EOF
}

func newRows(base driver.Rows, ctx context.Context, tx driver.Tx) *rows {
	// Column kinds are looked up on first need: a result without
	// time.Time, []byte or float64 values never asks the driver for type
	// names.
	return &rows{base: base, ctx: ctx, tx: tx}
}

func (r *rows) initKinds() {
	n := len(r.base.Columns())
	r.kinds = make([]int, n)
	tn, ok := r.base.(driver.RowsColumnTypeDatabaseTypeName)
	for i := range n {
		if !ok {
			r.kinds[i] = colBinary // unknown types: leave []byte alone
			continue
		}
		switch tn.ColumnTypeDatabaseTypeName(i) {
		case "BYTEA", "JSON", "JSONB", "XML":
			r.kinds[i] = colBinary
		case "TIME":
			r.kinds[i] = colTimeOfDay
		case "TIMETZ", "1266": // pgx names the types it has no codec for by OID
			r.kinds[i] = colTimeTZ
		case "FLOAT4":
			r.kinds[i] = colFloat4
		}
	}
}

func (r *rows) Columns() []string { return r.base.Columns() }

func (r *rows) Close() error {
	err := r.base.Close()
	if err != nil {
		// A later statement's error in a query of several reaches the
		// caller here (sql.Row.Scan returns it): classified, as from Next.
		err = driverError(r.ctx, err)
	}
	if r.tx != nil {
		tx := r.tx
		r.tx = nil
		if err != nil || r.failed {
			_ = tx.Rollback()
		} else {
			err = tx.Commit()
		}
	}
	return err
}

func (r *rows) Next(dest []driver.Value) error {
	if err := r.base.Next(dest); err != nil {
		if err == io.EOF {
			return err
		}
		r.failed = true
		return driverError(r.ctx, err)
	}
	for i, v := range dest {
		switch v.(type) {
		case time.Time, []byte, float64:
			if r.kinds == nil {
				r.initKinds()
			}
		default:
			continue
		}
		switch v := v.(type) {
		case time.Time:
			switch {
			case r.kinds[i] == colTimeOfDay:
				dest[i] = formatTimeOfDay(v)
			case r.kinds[i] == colTimeTZ:
				dest[i] = formatTimeOfDay(v) + formatOffset(v)
			case v.Location() != time.UTC: // pgx decodes in UTC already (pgxRegisterTypes)
				dest[i] = v.UTC()
			}
		case []byte:
			if r.kinds[i] != colBinary {
				dest[i] = string(v)
			}
		case float64:
			if r.kinds[i] == colFloat4 {
				// pgx widens the float32 (1.2 → 1.2000000476837158);
				// lib/pq parses the server's shortest text (1.2).
				dest[i], _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64)
			}
		}
	}
	return nil
}

func (r *rows) HasNextResultSet() bool {
	if n, ok := r.base.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

func (r *rows) NextResultSet() error {
	n, ok := r.base.(driver.RowsNextResultSet)
	if !ok {
		return io.EOF
	}
	if err := n.NextResultSet(); err != nil {
		if err == io.EOF {
			return err
		}
		r.failed = true
		return driverError(r.ctx, err)
	}
	r.kinds = nil // the next result set has columns of its own
	return nil
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.base.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

var (
	typeString = reflect.TypeFor[string]()
	typeTime   = reflect.TypeFor[time.Time]()
	typeBytes  = reflect.TypeFor[[]byte]()
)

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	t, ok := r.base.(driver.RowsColumnTypeScanType)
	if !ok {
		return reflect.TypeFor[any]()
	}
	st := t.ColumnTypeScanType(i)
	if r.kinds == nil {
		r.initKinds()
	}
	switch {
	case r.kinds[i] == colTimeOfDay, r.kinds[i] == colTimeTZ:
		return typeString
	case r.kinds[i] != colBinary && st == typeBytes:
		return typeString
	case st == typeTime:
		return typeTime
	}
	return st
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.base.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.base.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.base.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
