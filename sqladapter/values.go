package sqladapter

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"io"
	"reflect"
	"strconv"
	"time"
)

// normaliseArg rewrites the Go argument types the two drivers would send
// differently (see the table in the package documentation).
func normaliseArg(nv *driver.NamedValue) {
	switch v := nv.Value.(type) {
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
}

// formatInterval writes d as a PostgreSQL interval literal.
func formatInterval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// bytesArgs sends each []byte argument as text unless its parameter is
// bytea, so that JSON in a []byte reaches json/jsonb columns, text columns
// get the text and bytea columns the bytes — whatever the driver. The
// parameter types come from describing the statement once per SQL text.
func (c *conn) bytesArgs(ctx context.Context, query string, args []driver.NamedValue) []driver.NamedValue {
	has := false
	for _, a := range args {
		if _, ok := a.Value.([]byte); ok {
			has = true
			break
		}
	}
	if !has || c.c.opts.Driver == "" {
		return args
	}
	types, err := c.cachedDescribe(ctx, query)
	if err != nil {
		return args // the query itself will report the problem
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
		return args
	}
	return out
}

// Column kinds that need normalising on the way out.
const (
	colOther  = iota
	colBinary // bytea, json, jsonb: []byte on both drivers
	colTimeOfDay
)

// rows normalises values on the way out: every time.Time in UTC, time of
// day as "15:04:05.999999", and every text-like value a string.
type rows struct {
	base  driver.Rows
	ctx   context.Context
	kinds []int
}

func newRows(base driver.Rows, ctx context.Context) *rows {
	// Column kinds are looked up on first need: a result without
	// time.Time or []byte values never asks the driver for type names.
	return &rows{base: base, ctx: ctx}
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
		case "BYTEA", "JSON", "JSONB":
			r.kinds[i] = colBinary
		case "TIME":
			r.kinds[i] = colTimeOfDay
		}
	}
}

func (r *rows) Columns() []string { return r.base.Columns() }
func (r *rows) Close() error {
	defer releaseAcquire(r.ctx)
	return r.base.Close()
}

func (r *rows) Next(dest []driver.Value) error {
	if err := r.base.Next(dest); err != nil {
		if err == io.EOF {
			return err
		}
		return ClassifyContext(r.ctx, err)
	}
	for i, v := range dest {
		switch v.(type) {
		case time.Time, []byte:
			if r.kinds == nil {
				r.initKinds()
			}
		}
		switch v := v.(type) {
		case time.Time:
			if r.kinds[i] == colTimeOfDay {
				dest[i] = v.Format("15:04:05.999999")
			} else {
				dest[i] = v.UTC()
			}
		case []byte:
			if r.kinds[i] != colBinary {
				dest[i] = string(v)
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
		return err
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
	case r.kinds[i] == colTimeOfDay:
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
