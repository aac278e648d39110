package sqladapter

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// queryBase runs a query on the driver's connection. On pgx, a query
// without arguments goes as one simple Query message, the way lib/pq sends
// it, so that several statements separated by semicolons run on both
// drivers (pgx's extended protocol refuses them) and each result set that
// has columns is returned, as lib/pq returns them (see [pgxResults]).
func (c *conn) queryBase(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.pgx != nil && len(args) == 0 {
		return pgxQuerySimple(ctx, c.pgx, query)
	}
	return c.queryer.QueryContext(ctx, query, pgxSimpleWithoutArgs(c.c.opts.Driver, args))
}

// pgxQuerySimple sends query in one simple Query message on pgx's
// connection and returns its first result set that has columns, with the
// first row read (as pgx's stdlib does, so that an error of the first
// statement that returns rows is the query's error).
func pgxQuerySimple(ctx context.Context, sc *stdlib.Conn, query string) (driver.Rows, error) {
	pc := sc.Conn()
	if pc.IsClosed() {
		return nil, driver.ErrBadConn
	}
	r := &pgxResults{mrr: pc.PgConn().Exec(ctx, query), m: pc.TypeMap()}
	rr, err := r.advance()
	if err == nil && rr != nil {
		r.use(rr)
		r.preload()
		err = r.preErr
	}
	if err != nil {
		r.Close()
		if pgconn.SafeToRetry(err) {
			return nil, driver.ErrBadConn
		}
		return nil, err
	}
	return r, nil
}

// pgxResults is the driver.Rows of a simple-protocol query on pgx with
// every result set lib/pq would return: each statement's rows, in order,
// skipping statements that return no columns (SET, BEGIN, INSERT without
// RETURNING). Values are pgx stdlib's, decoded the same way by the
// connection's type map (where [pgxRegisterTypes] has made bytea readable
// in both of PostgreSQL's text formats).
type pgxResults struct {
	mrr *pgconn.MultiResultReader
	m   *pgtype.Map

	rr     *pgconn.ResultReader // the current result set, nil when none or done
	fields []pgconn.FieldDescription
	decode []func([]byte) (driver.Value, error)
	names  []string

	preloaded, preMore bool  // the first row of the first result set was read
	preErr             error // the error of reading it

	peeked  bool
	next    *pgconn.ResultReader // the next result set with columns, once peeked
	nextErr error
	closed  bool
}

// advance closes the current result set and moves to the next one that
// has columns; it returns nil when there is none.
func (r *pgxResults) advance() (*pgconn.ResultReader, error) {
	if r.rr != nil {
		rr := r.rr
		r.rr = nil
		if _, err := rr.Close(); err != nil {
			return nil, err
		}
	}
	for r.mrr.NextResult() {
		rr := r.mrr.ResultReader()
		if len(rr.FieldDescriptions()) > 0 {
			return rr, nil
		}
		if _, err := rr.Close(); err != nil {
			return nil, err
		}
	}
	return nil, r.mrr.Close()
}

// use makes rr the current result set. pgconn reuses the field
// descriptions' memory for the next result set: they are copied.
func (r *pgxResults) use(rr *pgconn.ResultReader) {
	r.rr = rr
	r.fields = append([]pgconn.FieldDescription(nil), rr.FieldDescriptions()...)
	r.names = make([]string, len(r.fields))
	r.decode = make([]func([]byte) (driver.Value, error), len(r.fields))
	for i, fd := range r.fields {
		r.names[i] = fd.Name
		r.decode[i] = pgxValueFunc(r.m, fd)
	}
}

func (r *pgxResults) preload() {
	r.preloaded = true
	r.preMore = r.rr.NextRow()
	if !r.preMore {
		rr := r.rr
		r.rr = nil
		_, r.preErr = rr.Close()
	}
}

func (r *pgxResults) Columns() []string {
	if r.names == nil {
		return []string{}
	}
	return r.names
}

func (r *pgxResults) Next(dest []driver.Value) error {
	if r.preloaded {
		r.preloaded = false
		if !r.preMore {
			return io.EOF
		}
	} else {
		if r.rr == nil {
			return io.EOF
		}
		if !r.rr.NextRow() {
			rr := r.rr
			r.rr = nil
			if _, err := rr.Close(); err != nil {
				return err
			}
			return io.EOF
		}
	}
	for i, v := range r.rr.Values() {
		if v == nil {
			dest[i] = nil
			continue
		}
		d, err := r.decode[i](v)
		if err != nil {
			return errors.New("convert field " + strconv.Itoa(i) + " failed: " + err.Error())
		}
		dest[i] = d
	}
	return nil
}

func (r *pgxResults) HasNextResultSet() bool {
	if !r.peeked {
		r.peeked = true
		r.next, r.nextErr = r.advance()
	}
	return r.next != nil || r.nextErr != nil
}

func (r *pgxResults) NextResultSet() error {
	r.HasNextResultSet()
	r.peeked = false
	next, err := r.next, r.nextErr
	r.next, r.nextErr = nil, nil
	if err != nil {
		return err
	}
	if next == nil {
		return io.EOF
	}
	r.use(next)
	return nil
}

func (r *pgxResults) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.rr != nil {
		_, err = r.rr.Close()
		r.rr = nil
	}
	if cerr := r.mrr.Close(); err == nil {
		err = cerr
	}
	return err
}

// Column metadata, as pgx's stdlib reports it.

func (r *pgxResults) ColumnTypeDatabaseTypeName(i int) string {
	if dt, ok := r.m.TypeForOID(r.fields[i].DataTypeOID); ok {
		return strings.ToUpper(dt.Name)
	}
	return strconv.FormatInt(int64(r.fields[i].DataTypeOID), 10)
}

func (r *pgxResults) ColumnTypeLength(i int) (int64, bool) {
	fd := r.fields[i]
	switch fd.DataTypeOID {
	case pgtype.TextOID, pgtype.ByteaOID:
		return math.MaxInt64, true
	case pgtype.VarcharOID, pgtype.BPCharOID:
		return int64(fd.TypeModifier - 4), true
	case pgtype.VarbitOID:
		return int64(fd.TypeModifier), true
	}
	return 0, false
}

func (r *pgxResults) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	fd := r.fields[i]
	if fd.DataTypeOID != pgtype.NumericOID {
		return 0, 0, false
	}
	mod := fd.TypeModifier - 4
	return int64((mod >> 16) & 0xffff), int64(mod & 0xffff), true
}

func (r *pgxResults) ColumnTypeScanType(i int) reflect.Type {
	switch r.fields[i].DataTypeOID {
	case pgtype.Float8OID, pgtype.NumericOID:
		return reflect.TypeFor[float64]()
	case pgtype.Float4OID:
		return reflect.TypeFor[float32]()
	case pgtype.Int8OID:
		return reflect.TypeFor[int64]()
	case pgtype.Int4OID:
		return reflect.TypeFor[int32]()
	case pgtype.Int2OID:
		return reflect.TypeFor[int16]()
	case pgtype.BoolOID:
		return reflect.TypeFor[bool]()
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return reflect.TypeFor[time.Time]()
	case pgtype.ByteaOID:
		return reflect.TypeFor[[]byte]()
	}
	return reflect.TypeFor[string]()
}

// pgxValueFunc returns how pgx's stdlib turns a column's wire value into a
// driver.Value (stdlib's Rows.Next): the same Go types, decoded by the
// connection's type map.
func pgxValueFunc(m *pgtype.Map, fd pgconn.FieldDescription) func([]byte) (driver.Value, error) {
	switch fd.DataTypeOID {
	case pgtype.BoolOID:
		return scanAs(m, fd, func(d bool) (driver.Value, error) { return d, nil })
	case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		return scanAs(m, fd, func(d []byte) (driver.Value, error) { return d, nil })
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		return scanAs(m, fd, func(d pgtype.Uint32) (driver.Value, error) { return d.Value() })
	case pgtype.DateOID:
		return scanAs(m, fd, func(d pgtype.Date) (driver.Value, error) { return d.Value() })
	case pgtype.Float4OID:
		return scanAs(m, fd, func(d float32) (driver.Value, error) { return float64(d), nil })
	case pgtype.Float8OID:
		return scanAs(m, fd, func(d float64) (driver.Value, error) { return d, nil })
	case pgtype.Int2OID:
		return scanAs(m, fd, func(d int16) (driver.Value, error) { return int64(d), nil })
	case pgtype.Int4OID:
		return scanAs(m, fd, func(d int32) (driver.Value, error) { return int64(d), nil })
	case pgtype.Int8OID:
		return scanAs(m, fd, func(d int64) (driver.Value, error) { return d, nil })
	case pgtype.TimestampOID:
		return scanAs(m, fd, func(d pgtype.Timestamp) (driver.Value, error) { return d.Value() })
	case pgtype.TimestamptzOID:
		return scanAs(m, fd, func(d pgtype.Timestamptz) (driver.Value, error) { return d.Value() })
	}
	return scanAs(m, fd, func(d string) (driver.Value, error) { return d, nil })
}

// scanAs decodes into a T with the type map's plan, then converts.
func scanAs[T any](m *pgtype.Map, fd pgconn.FieldDescription, conv func(T) (driver.Value, error)) func([]byte) (driver.Value, error) {
	var d T
	plan := m.PlanScan(fd.DataTypeOID, fd.Format, &d)
	return func(src []byte) (driver.Value, error) {
		var zero T
		d = zero
		if err := plan.Scan(src, &d); err != nil {
			return nil, err
		}
		return conv(d)
	}
}

// decodeTextBytea reads bytea in either of PostgreSQL's text formats: hex
// ("\x5c78") or escape (printable bytes as they are, "\\" for a backslash,
// "\ooo" in octal for the others).
func decodeTextBytea(src []byte) ([]byte, error) {
	if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
		out := make([]byte, hex.DecodedLen(len(src)-2))
		_, err := hex.Decode(out, src[2:])
		return out, err
	}
	out := make([]byte, 0, len(src))
	for i := 0; i < len(src); i++ {
		if src[i] != '\\' {
			out = append(out, src[i])
			continue
		}
		switch {
		case i+1 < len(src) && src[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(src) && isOctal(src[i+1]) && isOctal(src[i+2]) && isOctal(src[i+3]) && src[i+1] <= '3':
			out = append(out, (src[i+1]-'0')<<6|(src[i+2]-'0')<<3|(src[i+3]-'0'))
			i += 3
		default:
			return nil, errors.New("invalid bytea escape format")
		}
	}
	return out, nil
}

func isOctal(b byte) bool { return b >= '0' && b <= '7' }

// pgxRegisterTypes readies a new pgx connection's type map: bytea in text
// results (the simple protocol, and so PgxExecMode simple_protocol) is
// read in both of PostgreSQL's formats, as lib/pq reads it, rather than
// in the hex format only — with bytea_output = escape pgx fails with
// "invalid hex format". Other drivers' connections are left alone.
func pgxRegisterTypes(dc driver.Conn) {
	if sc, ok := dc.(*stdlib.Conn); ok {
		m := sc.Conn().TypeMap()
		m.RegisterType(&pgtype.Type{Name: "bytea", OID: pgtype.ByteaOID, Codec: byteaCodec{}})
		// timestamptz decoded in UTC at the source: rows.Next then has no
		// time to convert (and no second allocation). Client-side only.
		m.RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	}
}

// byteaCodec is pgx's bytea codec, except that text results are read with
// [decodeTextBytea].
type byteaCodec struct{ pgtype.ByteaCodec }

func (c byteaCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if format == pgtype.TextFormatCode {
		switch target.(type) {
		case *[]byte:
			return textByteaPlan{}
		case pgtype.BytesScanner:
			return textByteaPlan{}
		}
	}
	return c.ByteaCodec.PlanScan(m, oid, format, target)
}

func (c byteaCodec) DecodeDatabaseSQLValue(m *pgtype.Map, oid uint32, format int16, src []byte) (driver.Value, error) {
	return c.DecodeValue(m, oid, format, src)
}

func (c byteaCodec) DecodeValue(m *pgtype.Map, oid uint32, format int16, src []byte) (any, error) {
	if src == nil {
		return nil, nil
	}
	if format == pgtype.TextFormatCode {
		return decodeTextBytea(src)
	}
	return c.ByteaCodec.DecodeValue(m, oid, format, src)
}

// textByteaPlan scans bytea in a text result into a *[]byte or a
// pgtype.BytesScanner.
type textByteaPlan struct{}

func (textByteaPlan) Scan(src []byte, dst any) error {
	var b []byte
	if src != nil {
		var err error
		if b, err = decodeTextBytea(src); err != nil {
			return err
		}
	}
	switch d := dst.(type) {
	case *[]byte:
		*d = b
		return nil
	case pgtype.BytesScanner:
		return d.ScanBytes(b)
	}
	return errors.New("sqladapter: cannot scan bytea into " + reflect.TypeOf(dst).String())
}
