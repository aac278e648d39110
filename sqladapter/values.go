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
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// normaliseArg rewrites the Go argument types the two drivers would send
// differently (see the table in the package documentation). A
// driver.Valuer is resolved here, as database/sql does for lib/pq, so that
// what it returns — JSON in a []byte, a time, a NULL — is treated like the
// same value passed directly. So is a pointer, as database/sql does for
// lib/pq: its value is sent, or NULL for a nil pointer — pgx alone cannot
// send a *any, or a pointer to a pointer, at all.
func normaliseArg(nv *driver.NamedValue) error {
	switch v := nv.Value.(type) {
	case nil, string, int64, int, int32, int16, int8, uint64, uint, uint32, uint16, uint8, float64, bool:
		return nil // no methods, no pointer, nothing to rewrite: the common case, without reflection
	case float32:
		// The decimal the float32 was written as (1.1), as float4 results
		// read back: widened, lib/pq sent 1.100000023841858 and pgx 1.1.
		nv.Value, _ = strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
		return nil
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
		nv.Value = utcUnlessOffset(v)
	case *time.Time:
		if v == nil {
			nv.Value = nil
		} else {
			nv.Value = utcUnlessOffset(*v)
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

// utcUnlessOffset returns t in UTC when its zone is UTC's (time.Local on a
// UTC machine, say): then its date and its UTC wall clock are the same. A
// time with an offset stays as it is until typedArgs knows its parameter's
// type: a date parameter takes the date in t's own zone, everything else
// the UTC wall clock (see the package documentation).
func utcUnlessOffset(t time.Time) time.Time {
	if _, off := t.Zone(); off == 0 {
		return t.UTC()
	}
	return t
}

// hasOffset reports a time.Time argument utcUnlessOffset left in its zone.
func hasOffset(v any) bool {
	t, ok := v.(time.Time)
	return ok && t.Location() != time.UTC
}

// formatDate writes t's date in its own zone as PostgreSQL reads a date.
func formatDate(t time.Time) string {
	if y := t.Year(); y <= 0 {
		return fmt.Sprintf("%04d-%02d-%02d BC", 1-y, t.Month(), t.Day())
	}
	return t.Format("2006-01-02")
}

// formatInterval writes d as a PostgreSQL interval literal.
func formatInterval(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
}

// typedArgs sends the arguments whose encoding depends on their
// parameter's type the same way on both drivers: each []byte as text
// unless its parameter is bytea, so that JSON in a []byte reaches json/jsonb
// columns, text columns get the text and bytea columns the bytes; each
// time.Time with an offset (utcUnlessOffset) as its date in its own zone
// if its parameter is a date — as both raw drivers send it — else in UTC.
// The parameter types come from describing the statement (see
// describeCache), only when such an argument is there. A statement the
// server cannot describe fails here with the server's error, as it would
// when run: inside a transaction the failed describe has aborted the
// transaction, so the statement must not be sent.
func (c *conn) typedArgs(ctx context.Context, query string, args []driver.NamedValue) ([]driver.NamedValue, error) {
	has := false
	for _, a := range args {
		if _, ok := a.Value.([]byte); ok || hasOffset(a.Value) {
			has = true
			break
		}
	}
	if !has {
		return args, nil
	}
	var types []string // none known: []byte stays, a time goes in UTC
	if c.c.opts.Driver != "" {
		var err error
		types, err = c.cachedDescribe(ctx, query)
		if err != nil && !errors.Is(err, errNotDescribable) {
			return nil, err
		}
	}
	typeOf := func(a driver.NamedValue) string {
		if a.Ordinal-1 < len(types) {
			return types[a.Ordinal-1]
		}
		return ""
	}
	var out []driver.NamedValue
	for i, a := range args {
		var v any
		switch x := a.Value.(type) {
		case []byte:
			if t := typeOf(a); t == "bytea" || t == "" {
				continue
			}
			v = string(x)
		case time.Time:
			if !hasOffset(x) {
				continue
			}
			if typeOf(a) == "date" {
				v = formatDate(x)
			} else {
				v = x.UTC()
			}
		default:
			continue
		}
		if out == nil {
			out = append([]driver.NamedValue(nil), args...)
		}
		out[i].Value = v
	}
	if out == nil {
		return args, nil
	}
	return out, nil
}

// Column kinds that need normalising on the way out.
const (
	colUnknown   = iota // not looked up yet
	colOther            // everything else
	colBinary           // bytea, json, jsonb, xml: []byte on both drivers
	colTimeOfDay        // time: "15:04:05.999999"
	colTimeTZ           // timetz: "15:04:05.999999-07", as PostgreSQL writes it
	colFloat4
	colInteger // oid, xid, cid: int64, as pgx decodes them; lib/pq gives their text
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
	base  driver.Rows
	ctx   context.Context
	kinds []int8                                // per column, looked up on first need (see kind); nil until then
	names driver.RowsColumnTypeDatabaseTypeName // base's, once kinds is set; nil if it has none
	watch []uint16                              // the columns Next looks at (see plan); nil until the first row
	tx    driver.Tx                             // the statement's own transaction, or nil

	kindsBuf [8]int8    // kinds of up to 8 columns, without allocating
	watchBuf [16]uint16 // watch of up to 16 columns, likewise

	src    int8 // whose values base returns (srcPGX, srcPQ), if known
	every  bool // Next looks at every column (see plan)
	failed bool // Next returned an error other than io.EOF
	closed bool // Close was called: the connection may reuse r (see conn.newRows)
}

// Whose values a result's rows hold: the value types of the drivers this
// package configures are known per column type (see plainColumn).
const (
	srcUnknown = iota
	srcPGX     // pgx's stdlib.Rows or pgxResults, on a connection of NewConnector's
	srcPQ      // lib/pq's rows
)

func newRows(base driver.Rows, ctx context.Context, tx driver.Tx) *rows {
	// Column kinds are looked up on first need, column by column: a
	// result without time.Time, []byte or float64 values never asks the
	// driver for type names.
	return &rows{base: base, ctx: ctx, tx: tx}
}

// newRows wraps rows that c's driver returned. The rows of the
// connection's previous statement are reused once closed: database/sql
// calls nothing on driver rows after Close (every sql.Rows method checks
// its own closed flag first), and it calls the driver, Close included,
// under the connection's lock, so no one else touches c.spare meanwhile.
func (c *conn) newRows(base driver.Rows, ctx context.Context, tx driver.Tx) *rows {
	r := c.spare
	if r != nil && r.closed {
		*r = rows{base: base, ctx: ctx, tx: tx}
	} else {
		r = newRows(base, ctx, tx)
		c.spare = r
	}
	switch base.(type) {
	case *stdlib.Rows, *pgxResults:
		if c.pgx != nil { // its type map is pgxRegisterTypes'
			r.src = srcPGX
		}
	default:
		if c.c.opts.Driver == driverPQ && isPQRows(base) {
			r.src = srcPQ
		}
	}
	return r
}

// pqRowsType is lib/pq's (unexported) rows type, once seen.
var pqRowsType atomic.Pointer[reflect.Type]

// isPQRows reports rows of lib/pq's own.
func isPQRows(r driver.Rows) bool {
	t := reflect.TypeOf(r)
	if p := pqRowsType.Load(); p != nil {
		return t == *p
	}
	if t.Kind() != reflect.Pointer || t.Elem().PkgPath() != "github.com/lib/pq" || t.Elem().Name() != "rows" {
		return false
	}
	seen := t // t itself stays on the stack: this allocates once
	pqRowsType.Store(&seen)
	return true
}

// kind returns column i's kind, asking the driver for its type name the
// first time.
func (r *rows) kind(i int) int8 {
	if r.kinds != nil {
		if k := r.kinds[i]; k != colUnknown {
			return k
		}
	}
	return r.lookupKind(i)
}

func (r *rows) lookupKind(i int) int8 {
	if r.kinds == nil {
		if n := len(r.base.Columns()); n <= len(r.kindsBuf) {
			r.kindsBuf = [len(r.kindsBuf)]int8{}
			r.kinds = r.kindsBuf[:n]
		} else {
			r.kinds = make([]int8, n)
		}
		r.names, _ = r.base.(driver.RowsColumnTypeDatabaseTypeName)
	}
	k := int8(colBinary) // unknown types: leave []byte alone
	if r.names != nil {
		switch r.names.ColumnTypeDatabaseTypeName(i) {
		case "BYTEA", "JSON", "JSONB", "XML":
			k = colBinary
		case "TIME":
			k = colTimeOfDay
		case "TIMETZ", "1266": // pgx names the types it has no codec for by OID
			k = colTimeTZ
		case "FLOAT4":
			k = colFloat4
		case "OID", "XID", "CID":
			k = colInteger
		default:
			k = colOther
		}
	}
	r.kinds[i] = k
	return k
}

// plan sets the columns Next looks at: all of them (every), except, on the
// drivers whose value types it knows, those whose values the driver never
// returns as anything Next would rewrite (see plainColumn).
func (r *rows) plan(n int) {
	r.watch = r.watchBuf[:0]
	st, _ := r.base.(driver.RowsColumnTypeScanType)
	tn, _ := r.base.(driver.RowsColumnTypeDatabaseTypeName)
	if r.src == srcUnknown || st == nil || tn == nil {
		r.every = true
		return
	}
	for i := range n {
		if !plainColumn(r.src, st, tn, i) {
			r.watch = append(r.watch, uint16(i))
		}
	}
}

// plainColumn reports a column whose values are only ever int64, bool,
// string, NULL, float8's float64 or []byte of a binary type — which Next
// leaves as they are — given how the driver decodes the column's type:
//
//   - pgx (stdlib.Rows, pgxResults: see pgxValueFunc): time.Time only for
//     date, timestamp and timestamptz, whose scan type is time.Time; float4
//     alone has the scan type float32; []byte only for bytea, json, jsonb
//     and xml; everything else is int64, bool, float64 (float8) or string.
//   - lib/pq (textDecode, binaryDecode; fieldDesc.Type): int2, int4 and
//     int8 are int64, bool bool, float8 float64, varchar and text string
//     (but bit and varbit, of scan type string too, []byte); every other
//     type may need rewriting.
//
// The conformance values (every column type people use, on both drivers)
// hold Next to this.
func plainColumn(src int8, st driver.RowsColumnTypeScanType, tn driver.RowsColumnTypeDatabaseTypeName, i int) bool {
	t := st.ColumnTypeScanType(i)
	switch src {
	case srcPGX:
		return t != typeTime && t != typeFloat32
	case srcPQ:
		switch t {
		case typeInt64, typeInt32, typeInt16, typeBool, typeFloat64:
			return true
		case typeString:
			name := tn.ColumnTypeDatabaseTypeName(i)
			return name == "TEXT" || name == "VARCHAR"
		}
	}
	return false
}

func (r *rows) Columns() []string { return r.base.Columns() }

func (r *rows) Close() error {
	r.closed = true
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
	if r.watch == nil {
		r.plan(len(dest))
	}
	if r.every {
		for i, v := range dest {
			switch v.(type) {
			case time.Time, []byte, float64:
				r.normalise(dest, i)
			}
		}
		return nil
	}
	for _, i := range r.watch {
		// The common case without a call: a time.Time in UTC already that
		// is an instant, not a time of day (pgx returns no times of day).
		if t, ok := dest[i].(time.Time); ok && t.Location() == time.UTC {
			if r.src == srcPGX {
				continue
			}
			if k := r.kind(int(i)); k != colTimeOfDay && k != colTimeTZ {
				continue
			}
		}
		r.normalise(dest, int(i))
	}
	return nil
}

// normalise rewrites dest[i] — a time.Time, []byte or float64 — as rows
// returns it.
func (r *rows) normalise(dest []driver.Value, i int) {
	switch v := dest[i].(type) {
	case time.Time:
		k := int8(colOther) // pgx returns time.Time for date, timestamp and timestamptz only
		if r.src != srcPGX {
			k = r.kind(i)
		}
		switch k {
		case colTimeOfDay:
			dest[i] = formatTimeOfDay(v)
		case colTimeTZ:
			dest[i] = formatTimeOfDay(v) + formatOffset(v)
		default:
			if v.Location() != time.UTC { // pgx decodes in UTC already (pgxRegisterTypes)
				dest[i] = v.UTC()
			}
		}
	case []byte:
		switch r.kind(i) {
		case colBinary:
		case colInteger:
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				dest[i] = n
			} else {
				dest[i] = string(v)
			}
		default:
			dest[i] = string(v)
		}
	case float64:
		if r.kind(i) == colFloat4 {
			// pgx widens the float32 (1.2 → 1.2000000476837158);
			// lib/pq parses the server's shortest text (1.2).
			dest[i], _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64)
		}
	}
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
	r.kinds, r.names, r.watch, r.every = nil, nil, nil, false // the next result set has columns of its own
	return nil
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.base.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

var (
	typeString  = reflect.TypeFor[string]()
	typeTime    = reflect.TypeFor[time.Time]()
	typeBytes   = reflect.TypeFor[[]byte]()
	typeFloat32 = reflect.TypeFor[float32]()
	typeFloat64 = reflect.TypeFor[float64]()
	typeInt64   = reflect.TypeFor[int64]()
	typeInt32   = reflect.TypeFor[int32]()
	typeInt16   = reflect.TypeFor[int16]()
	typeBool    = reflect.TypeFor[bool]()
)

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	t, ok := r.base.(driver.RowsColumnTypeScanType)
	if !ok {
		return reflect.TypeFor[any]()
	}
	st := t.ColumnTypeScanType(i)
	switch k := r.kind(i); {
	case k == colTimeOfDay, k == colTimeTZ:
		return typeString
	case k != colBinary && st == typeBytes:
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
