package sqladapter

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestNormaliseArg(t *testing.T) {
	t.Parallel()
	plus2 := time.FixedZone("+02", 2*60*60)
	inZone := time.Date(2024, 3, 10, 12, 30, 45, 123456789, plus2)
	inUTC := time.Date(2024, 3, 10, 10, 30, 45, 123456789, time.UTC)
	// A time with an offset stays in its zone until typedArgs knows its
	// parameter's type (a date takes the date in the time's own zone); one
	// in a zone at UTC's offset is sent in UTC at once.
	atZero := time.Date(2024, 3, 10, 10, 30, 45, 123456789, time.FixedZone("GMT", 0))
	raw := json.RawMessage(`{"a":1}`)
	var nilRaw json.RawMessage
	var nilRawPtr *json.RawMessage
	var nilTimePtr *time.Time
	var nilDurPtr *time.Duration
	dur := 90 * time.Second
	type myString string

	for _, tc := range []struct {
		name string
		in   any
		want any
	}{
		{"json.RawMessage", raw, `{"a":1}`},
		{"nil json.RawMessage", nilRaw, nil},
		{"*json.RawMessage", &raw, `{"a":1}`},
		{"*json.RawMessage to nil", &nilRaw, nil},
		{"nil *json.RawMessage", nilRawPtr, nil},
		{"float32, as written", float32(1.1), 1.1},
		{"time.Time in +02", inZone, inZone},
		{"*time.Time", &inZone, inZone},
		{"time.Time at offset 0", atZero, inUTC},
		{"*time.Time at offset 0", &atZero, inUTC},
		{"nil *time.Time", nilTimePtr, nil},
		{"time.Duration", 1500 * time.Millisecond, "1500000 microseconds"},
		{"negative time.Duration", -2 * time.Microsecond, "-2 microseconds"},
		{"*time.Duration", &dur, "90000000 microseconds"},
		{"nil *time.Duration", nilDurPtr, nil},
		{"nil", nil, nil},
		{"string", "x", "x"},
		{"int64", int64(7), int64(7)},
		{"[]byte", []byte("b"), []byte("b")},
		{"bool", true, true},
		{"named string type", myString("m"), myString("m")},
		{"*any holding []byte", ptrTo(any([]byte{1})), []byte{1}},
		{"*any holding nil", ptrTo(any(nil)), nil},
		{"**[]byte", ptrTo(ptrTo([]byte{2})), []byte{2}},
		{"*any holding *time.Time", ptrTo(any(&inZone)), inZone},
		{"*string", ptrTo("s"), "s"},
		{"nil *string", (*string)(nil), nil},
		{"*any holding a nil *int", ptrTo(any((*int)(nil))), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nv := driver.NamedValue{Ordinal: 1, Value: tc.in}
			_ = normaliseArg(&nv)
			if !reflect.DeepEqual(nv.Value, tc.want) {
				t.Errorf("normaliseArg(%#v) = %#v, want %#v", tc.in, nv.Value, tc.want)
			}
			if want, ok := tc.want.(time.Time); ok && want.Location() == time.UTC {
				got := nv.Value.(time.Time)
				if got.Location() != time.UTC || !got.Equal(want) {
					t.Errorf("normaliseArg(%v) = %v in %v, want the same instant in time.UTC", tc.in, got, got.Location())
				}
			}
			if nv.Ordinal != 1 {
				t.Errorf("Ordinal changed to %d", nv.Ordinal)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

// typedRows are driver rows that know their columns' database types and
// scan types.
type typedRows struct {
	cols      []string
	typeNames []string
	scanTypes []reflect.Type
	data      [][]driver.Value
	err       error // returned once data is exhausted, instead of io.EOF
}

func (r *typedRows) Columns() []string                                 { return r.cols }
func (r *typedRows) Close() error                                      { return nil }
func (r *typedRows) ColumnTypeDatabaseTypeName(i int) string           { return r.typeNames[i] }
func (r *typedRows) ColumnTypeScanType(i int) reflect.Type             { return r.scanTypes[i] }
func (r *typedRows) ColumnTypeLength(int) (int64, bool)                { return 8, true }
func (r *typedRows) ColumnTypeNullable(int) (bool, bool)               { return true, true }
func (r *typedRows) ColumnTypePrecisionScale(int) (int64, int64, bool) { return 10, 2, true }
func (r *typedRows) Next(dest []driver.Value) error {
	if len(r.data) == 0 {
		if r.err != nil {
			return r.err
		}
		return io.EOF
	}
	copy(dest, r.data[0])
	r.data = r.data[1:]
	return nil
}

func TestRowsNormalise(t *testing.T) {
	t.Parallel()
	plus2 := time.FixedZone("+02", 2*60*60)
	zeroOffset := time.FixedZone("", 0) // lib/pq's zone for date and timestamp
	tBytes, tString, tTime := reflect.TypeFor[[]byte](), reflect.TypeFor[string](), reflect.TypeFor[time.Time]()

	cols := []struct {
		typeName string
		scanType reflect.Type
		in       driver.Value
		want     driver.Value
		wantScan reflect.Type
	}{
		{"TIMESTAMPTZ", tTime, time.Date(2024, 3, 10, 12, 0, 0, 0, plus2), time.Date(2024, 3, 10, 10, 0, 0, 0, time.UTC), tTime},
		{"TIMESTAMP", tTime, time.Date(2024, 3, 10, 12, 0, 0, 5000, zeroOffset), time.Date(2024, 3, 10, 12, 0, 0, 5000, time.UTC), tTime},
		{"DATE", tTime, time.Date(2024, 2, 29, 0, 0, 0, 0, zeroOffset), time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), tTime},
		{"TIME", tTime, time.Date(0, 1, 1, 3, 4, 5, 123456000, zeroOffset), "03:04:05.123456", tString},
		{"TIME", tTime, time.Date(0, 1, 1, 3, 4, 5, 0, time.UTC), "03:04:05", tString},
		{"TIME", tString, "03:04:05.5", "03:04:05.5", tString},                         // pgx sends a string already
		{"TIME", tTime, time.Date(0, 1, 2, 0, 0, 0, 0, time.UTC), "24:00:00", tString}, // lib/pq's 24:00
		{"TIMETZ", tTime, time.Date(0, 1, 1, 11, 59, 59, 500000000, time.FixedZone("", 4*3600)), "11:59:59.5+04", tString},
		{"TIMETZ", tTime, time.Date(0, 1, 1, 11, 59, 59, 0, time.FixedZone("", -(4*3600+30*60))), "11:59:59-04:30", tString},
		{"TIMETZ", tTime, time.Date(0, 1, 1, 11, 59, 59, 0, time.FixedZone("", 4*3600+62)), "11:59:59+04:01:02", tString},
		{"TIMETZ", tTime, time.Date(0, 1, 2, 0, 0, 0, 0, time.FixedZone("", -4*3600)), "24:00:00-04", tString},
		{"TIMETZ", tTime, time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), "00:00:00+00", tString},
		{"1266", tString, "11:59:59+04", "11:59:59+04", tString}, // pgx: timetz by OID, a string already
		{"XML", tBytes, []byte("<a/>"), []byte("<a/>"), tBytes},
		{"UUID", tBytes, []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", tString},
		{"NUMERIC", tBytes, []byte("12.50"), "12.50", tString},
		{"_TEXT", tBytes, []byte("{a,b}"), "{a,b}", tString},
		{"INTERVAL", tBytes, []byte("01:00:00"), "01:00:00", tString},
		{"INET", tBytes, []byte("10.0.0.1"), "10.0.0.1", tString},
		{"BYTEA", tBytes, []byte{0, 1, 2}, []byte{0, 1, 2}, tBytes},
		{"JSON", tBytes, []byte(`{"a":1}`), []byte(`{"a":1}`), tBytes},
		{"JSONB", tBytes, []byte(`{"b":2}`), []byte(`{"b":2}`), tBytes},
		{"TEXT", tString, "t", "t", tString},
		{"INT8", reflect.TypeFor[int64](), int64(9), int64(9), reflect.TypeFor[int64]()},
		{"TEXT", tString, nil, nil, tString},
	}
	base := &typedRows{}
	row := make([]driver.Value, len(cols))
	for i, c := range cols {
		base.cols = append(base.cols, c.typeName)
		base.typeNames = append(base.typeNames, c.typeName)
		base.scanTypes = append(base.scanTypes, c.scanType)
		row[i] = c.in
	}
	base.data = [][]driver.Value{row}

	r := newRows(base, context.Background(), nil)
	dest := make([]driver.Value, len(cols))
	if err := r.Next(dest); err != nil {
		t.Fatalf("Next: %v", err)
	}
	for i, c := range cols {
		if !reflect.DeepEqual(dest[i], c.want) {
			t.Errorf("column %d %s: %#v → %#v, want %#v", i, c.typeName, c.in, dest[i], c.want)
		}
		if tm, ok := dest[i].(time.Time); ok {
			want := c.want.(time.Time)
			if tm.Location() != time.UTC || tm != want {
				t.Errorf("column %d %s: %v in %q, want == %v in UTC", i, c.typeName, tm, tm.Location(), want)
			}
		}
		if got := r.ColumnTypeScanType(i); got != c.wantScan {
			t.Errorf("column %d %s: ColumnTypeScanType = %v, want %v", i, c.typeName, got, c.wantScan)
		}
		if got := r.ColumnTypeDatabaseTypeName(i); got != c.typeName {
			t.Errorf("column %d: ColumnTypeDatabaseTypeName = %q, want %q", i, got, c.typeName)
		}
	}
	if l, ok := r.ColumnTypeLength(0); l != 8 || !ok {
		t.Errorf("ColumnTypeLength = %d, %t; want the base's 8, true", l, ok)
	}
	if n, ok := r.ColumnTypeNullable(0); !n || !ok {
		t.Errorf("ColumnTypeNullable = %t, %t; want the base's true, true", n, ok)
	}
	if p, s, ok := r.ColumnTypePrecisionScale(0); p != 10 || s != 2 || !ok {
		t.Errorf("ColumnTypePrecisionScale = %d, %d, %t; want the base's 10, 2, true", p, s, ok)
	}
	if err := r.Next(dest); err != io.EOF { //nolint:errorlint // database/sql compares io.EOF by identity
		t.Errorf("Next at end = %v, want io.EOF itself", err)
	}
}

func TestRowsWithoutTypeNames(t *testing.T) {
	t.Parallel()
	// Without type names every []byte is left alone; times still go to UTC.
	plus2 := time.FixedZone("+02", 2*60*60)
	// Only driver.Rows: the column type interfaces of typedRows are hidden.
	plain := struct{ driver.Rows }{&typedRows{
		cols: []string{"b", "t"},
		data: [][]driver.Value{{[]byte("x"), time.Date(2024, 1, 1, 2, 0, 0, 0, plus2)}},
	}}
	r := newRows(plain, context.Background(), nil)
	dest := make([]driver.Value, 2)
	if err := r.Next(dest); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dest[0], []byte("x")) {
		t.Errorf("[]byte of unknown type = %#v, want it unchanged", dest[0])
	}
	if tm, ok := dest[1].(time.Time); !ok || tm.Location() != time.UTC || !tm.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("time = %#v, want 2024-01-01 00:00 UTC", dest[1])
	}
	if got := r.ColumnTypeScanType(0); got != reflect.TypeFor[any]() {
		t.Errorf("ColumnTypeScanType without base support = %v, want any", got)
	}
	if got := r.ColumnTypeDatabaseTypeName(0); got != "" {
		t.Errorf("ColumnTypeDatabaseTypeName without base support = %q", got)
	}
}

func TestRowsClassifyErrors(t *testing.T) {
	t.Parallel()
	base := &typedRows{
		cols: []string{"n"}, typeNames: []string{"INT8"}, scanTypes: []reflect.Type{reflect.TypeFor[int64]()},
		err: &pgconn.PgError{Severity: "ERROR", Code: "22012", Message: "division by zero"},
	}
	r := newRows(base, context.Background(), nil)
	err := r.Next(make([]driver.Value, 1))
	if !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Next error = %v, want ErrInvalidInput", err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("Next error %v does not wrap the driver's error", err)
	}
}

// multiRows has two result sets of different types.
type multiRows struct {
	sets []*typedRows
}

func (m *multiRows) Columns() []string              { return m.sets[0].Columns() }
func (m *multiRows) Close() error                   { return nil }
func (m *multiRows) Next(dest []driver.Value) error { return m.sets[0].Next(dest) }
func (m *multiRows) ColumnTypeDatabaseTypeName(i int) string {
	return m.sets[0].ColumnTypeDatabaseTypeName(i)
}
func (m *multiRows) HasNextResultSet() bool { return len(m.sets) > 1 }
func (m *multiRows) NextResultSet() error {
	if len(m.sets) < 2 {
		return io.EOF
	}
	m.sets = m.sets[1:]
	return nil
}

func TestRowsNextResultSetRetypes(t *testing.T) {
	t.Parallel()
	m := &multiRows{sets: []*typedRows{
		{cols: []string{"a"}, typeNames: []string{"BYTEA"}, data: [][]driver.Value{{[]byte("x")}}},
		{cols: []string{"a"}, typeNames: []string{"UUID"}, data: [][]driver.Value{{[]byte("y")}}},
	}}
	r := newRows(m, context.Background(), nil)
	dest := make([]driver.Value, 1)
	if err := r.Next(dest); err != nil || !reflect.DeepEqual(dest[0], []byte("x")) {
		t.Fatalf("first set: %#v, %v", dest[0], err)
	}
	if !r.HasNextResultSet() {
		t.Fatal("HasNextResultSet = false")
	}
	if err := r.NextResultSet(); err != nil {
		t.Fatal(err)
	}
	if err := r.Next(dest); err != nil || dest[0] != "y" {
		t.Errorf("second set (UUID): %#v, %v; want string \"y\"", dest[0], err)
	}
}
