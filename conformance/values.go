package conformance

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// valueCase stores arg in a column of type col and scans it back.
type valueCase struct {
	name  string
	col   string
	arg   any
	want  any        // the value scanned into `any`, on every target
	typed func() any // a typed destination (a pointer)
}

func ptr[T any](v T) *T { return &v }

// jsonMap is the kind of type applications bind: its Value is JSON in a
// []byte (nil for a nil map, as a NULL).
type jsonMap map[string]string

func (m jsonMap) Value() (driver.Value, error) {
	if m == nil {
		return nil, nil
	}
	return json.Marshal(map[string]string(m))
}

// rawBytes is a Valuer returning bytes meant for a bytea column.
type rawBytes []byte

func (b rawBytes) Value() (driver.Value, error) { return []byte(b), nil }

var plus2 = time.FixedZone("plus2", 2*3600)

// valueCases: the column types people use × the Go argument types they
// pass, including every row of the table in sqladapter's documentation.
var valueCases = []valueCase{
	{"int2", "int2", int64(7), int64(7), func() any { return new(int16) }},
	{"int4", "int4", 42, int64(42), func() any { return new(int32) }},
	{"int4-from-int32", "int4", int32(-5), int64(-5), func() any { return new(int) }},
	{"int8", "int8", int64(1) << 40, int64(1) << 40, func() any { return new(int64) }},
	{"numeric-string", "numeric", "1.50", "1.50", func() any { return new(string) }},
	{"numeric-float", "numeric(10,3)", 2.5, "2.500", func() any { return new(float64) }},
	{"numeric-int", "numeric", 12345678901, "12345678901", func() any { return new(int64) }},
	{"float4", "float4", 1.5, 1.5, func() any { return new(float32) }},
	{"float4-inexact", "float4", 1.2, 1.2, func() any { return new(float64) }},
	{"float4-array", "float4[]", "{1.2,3.4}", "{1.2,3.4}", func() any { return new(string) }},
	{"float8", "float8", 2.25, 2.25, func() any { return new(float64) }},
	{"bool", "bool", true, true, func() any { return new(bool) }},
	{"text-from-float32", "text", float32(1.1), "1.1", func() any { return new(string) }},
	{"float8-from-float32", "float8", float32(1.1), 1.1, func() any { return new(float64) }},
	{"date-from-time-in-zone", "date", time.Date(2024, 1, 2, 0, 30, 0, 0, plus2), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), func() any { return new(time.Time) }},
	{"text", "text", "héllo, wörld", "héllo, wörld", func() any { return new(string) }},
	{"text-from-bytes", "text", []byte("bytes as text"), "bytes as text", func() any { return new(string) }},
	{"varchar", "varchar(20)", "vc", "vc", func() any { return new(string) }},
	{"bytea", "bytea", []byte{0, 1, 2, '\\', 255}, []byte{0, 1, 2, '\\', 255}, func() any { return new([]byte) }},
	{"uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", func() any { return new(string) }},
	{"json-raw", "json", json.RawMessage(`{"a":1}`), []byte(`{"a":1}`), func() any { return new(json.RawMessage) }},
	{"json-bytes", "json", []byte(`{"a":1}`), []byte(`{"a":1}`), func() any { return new(json.RawMessage) }},
	{"jsonb-raw", "jsonb", json.RawMessage(`{"a":1}`), []byte(`{"a": 1}`), func() any { return new(json.RawMessage) }},
	{"jsonb-bytes", "jsonb", []byte(`{"a":1}`), []byte(`{"a": 1}`), func() any { return new(json.RawMessage) }},
	{"jsonb-string", "jsonb", `{"a":1}`, []byte(`{"a": 1}`), func() any { return new(string) }},
	{"timestamptz", "timestamptz", time.Date(2024, 1, 2, 3, 4, 5, 123456000, plus2), time.Date(2024, 1, 2, 1, 4, 5, 123456000, time.UTC), func() any { return new(time.Time) }},
	{"timestamp", "timestamp", time.Date(2024, 1, 2, 3, 4, 5, 123456000, plus2), time.Date(2024, 1, 2, 1, 4, 5, 123456000, time.UTC), func() any { return new(time.Time) }},
	{"timestamp-infinity", "timestamp", "infinity", "infinity", func() any { return new(string) }},
	{"timestamptz-minus-infinity", "timestamptz", "-infinity", "-infinity", func() any { return new(string) }},
	{"timestamp-string", "timestamp", "2024-01-02 03:04:05", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), func() any { return new(time.Time) }},
	{"date", "date", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), func() any { return new(time.Time) }},
	{"date-string", "date", "2024-02-29", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), func() any { return new(time.Time) }},
	{"time", "time", "03:04:05.25", "03:04:05.25", func() any { return new(string) }},
	{"time-from-time", "time", time.Date(2024, 1, 2, 3, 4, 5, 0, plus2), "01:04:05", func() any { return new(string) }},
	{"time-24", "time", "24:00", "24:00:00", func() any { return new(string) }}, // lib/pq reads it as midnight of 2 January
	{"timetz", "timetz", "11:59:59.5-04:30", "11:59:59.5-04:30", func() any { return new(string) }},
	{"timetz-utc", "timetz", "11:59:59+00", "11:59:59+00", func() any { return new(string) }},
	{"timetz-seconds-offset", "timetz", "11:59:59+04:01:02", "11:59:59+04:01:02", func() any { return new(string) }},
	{"timetz-24", "timetz", "24:00-04", "24:00:00-04", func() any { return new(string) }},
	{"xml", "xml", "<a>x</a>", []byte("<a>x</a>"), func() any { return new(string) }},
	{"interval-duration", "interval", 90 * time.Minute, "01:30:00", func() any { return new(string) }},
	{"interval-string", "interval", "1 day 02:00:00", "1 day 02:00:00", func() any { return new(string) }},
	{"text-array", "text[]", []string{"a", "b c"}, `{a,"b c"}`, func() any { return new(string) }},
	{"int8-array", "int8[]", []int64{1, 2}, "{1,2}", func() any { return new(string) }},
	{"inet", "inet", "10.0.0.1", "10.0.0.1", func() any { return new(string) }},
	{"inet-cidr", "inet", "10.0.0.0/8", "10.0.0.0/8", func() any { return new(string) }},
	{"pointer", "text", ptr("p"), "p", func() any { return new(*string) }},
	{"pointer-to-pointer", "text", ptr(ptr("pp")), "pp", func() any { return new(string) }},
	{"pointer-to-any-bytes", "bytea", ptr(any([]byte{1, '\\', 255})), []byte{1, '\\', 255}, func() any { return new([]byte) }},
	{"pointer-to-any-text", "text", ptr(any("pa")), "pa", func() any { return new(string) }},
	{"valuer-bytes-text", "text", jsonMap{"a": "b"}, `{"a":"b"}`, func() any { return new(string) }},
	{"valuer-bytes-jsonb", "jsonb", jsonMap{"a": "b"}, []byte(`{"a": "b"}`), func() any { return new(json.RawMessage) }},
	{"valuer-bytes-bytea", "bytea", rawBytes{0, '\\', 255}, []byte{0, '\\', 255}, func() any { return new([]byte) }},
	{"valid-null-string", "text", sql.NullString{String: "x", Valid: true}, "x", func() any { return new(sql.NullString) }},
	{"valid-null-int", "int8", sql.NullInt64{Int64: 9, Valid: true}, int64(9), func() any { return new(sql.NullInt64) }},
}

// nullCases: a NULL of every column type, sent as a nil pointer or an
// invalid sql.Null*, scanned into both.
func nullCases() []valueCase {
	type n struct {
		col   string
		arg   any
		typed func() any
	}
	var out []valueCase
	for _, c := range []n{
		{"int2", sql.NullInt16{}, func() any { return new(sql.NullInt16) }},
		{"int4", (*int32)(nil), func() any { return new(sql.NullInt32) }},
		{"int8", sql.NullInt64{}, func() any { return new(*int64) }},
		{"numeric", (*string)(nil), func() any { return new(sql.NullString) }},
		{"float4", (*float32)(nil), func() any { return new(sql.NullFloat64) }},
		{"float8", sql.NullFloat64{}, func() any { return new(*float64) }},
		{"bool", sql.NullBool{}, func() any { return new(sql.NullBool) }},
		{"text", (*string)(nil), func() any { return new(sql.NullString) }},
		{"varchar(20)", sql.NullString{}, func() any { return new(*string) }},
		{"bytea", []byte(nil), func() any { return new([]byte) }},
		{"bytea", ptr(any(nil)), func() any { return new([]byte) }},
		{"text", []byte(nil), func() any { return new(sql.NullString) }},
		{"jsonb", []byte(nil), func() any { return new([]byte) }},
		{"json", jsonMap(nil), func() any { return new([]byte) }},
		{"uuid", (*string)(nil), func() any { return new(sql.NullString) }},
		{"json", json.RawMessage(nil), func() any { return new([]byte) }},
		{"jsonb", (*json.RawMessage)(nil), func() any { return new(*string) }},
		{"timestamptz", sql.NullTime{}, func() any { return new(sql.NullTime) }},
		{"timestamp", (*time.Time)(nil), func() any { return new(*time.Time) }},
		{"date", sql.NullTime{}, func() any { return new(sql.NullTime) }},
		{"time", (*string)(nil), func() any { return new(sql.NullString) }},
		{"timetz", (*string)(nil), func() any { return new(sql.NullString) }},
		{"xml", (*string)(nil), func() any { return new([]byte) }},
		{"interval", (*time.Duration)(nil), func() any { return new(sql.NullString) }},
		{"text[]", (*string)(nil), func() any { return new(sql.NullString) }},
		{"int8[]", (*string)(nil), func() any { return new(sql.NullString) }},
		{"inet", (*string)(nil), func() any { return new(sql.NullString) }},
	} {
		name := "null-" + c.col
		if _, ok := c.arg.([]byte); ok && c.col != "bytea" {
			name += "-from-nil-bytes"
		}
		if _, ok := c.arg.(jsonMap); ok {
			name += "-from-nil-valuer"
		}
		if _, ok := c.arg.(*any); ok {
			name += "-from-pointer-to-nil-any"
		}
		out = append(out, valueCase{name: name, col: c.col, arg: c.arg, want: nil, typed: c.typed})
	}
	return out
}

func valueTests(t *testing.T, r *run) {
	r.test(t, "Parity", func(t *testing.T) {
		cases := append(append([]valueCase(nil), valueCases...), nullCases()...)
		ddl := "CREATE TABLE {s}.vals (name text PRIMARY KEY"
		for i, c := range cases {
			ddl += fmt.Sprintf(", c%d %s", i, c.col)
		}
		e := r.newEnv(t, ddl+")")
		for i, c := range cases {
			col := fmt.Sprintf("c%d", i)
			ins := fmt.Sprintf("INSERT INTO %s.vals (name, %s) VALUES ($1, $2)", e.schema, col)
			if _, err := e.db.ExecContext(e.ctx, ins, c.name, c.arg); err != nil {
				t.Errorf("%s: store %T in %s: %v", c.name, c.arg, c.col, err)
				continue
			}
			q := fmt.Sprintf("SELECT %s FROM %s.vals WHERE name = $1", col, e.schema)
			var got any
			if err := e.db.QueryRowContext(e.ctx, q, c.name).Scan(&got); err != nil {
				t.Errorf("%s: scan into any: %v", c.name, err)
				continue
			}
			if !equalValues(got, c.want) {
				t.Errorf("%s: scan into any = %#v (%T), want %#v (%T)", c.name, got, got, c.want, c.want)
			}
			dst := c.typed()
			if err := e.db.QueryRowContext(e.ctx, q, c.name).Scan(dst); err != nil {
				t.Errorf("%s: scan into %T: %v", c.name, dst, err)
				continue
			}
			var stored sql.NullString
			if err := e.db.QueryRowContext(e.ctx, fmt.Sprintf("SELECT %s::text FROM %s.vals WHERE name = $1", col, e.schema), c.name).Scan(&stored); err != nil {
				t.Errorf("%s: stored text: %v", c.name, err)
				continue
			}
			r.mu.Lock()
			r.values["any:"+c.name] = got
			r.values["typed:"+c.name] = reflect.ValueOf(dst).Elem().Interface()
			r.values["stored:"+c.name] = stored
			r.mu.Unlock()
		}
	})
	byteaEscapeTests(t, r)
	r.test(t, "TimeArgumentIntoDate", func(t *testing.T) {
		// A time.Time bound to a date parameter is its date in its own
		// zone, as both raw drivers send it; into timestamp it is the UTC
		// wall clock (the package documentation), into timestamptz the
		// instant. Near midnight the UTC date is another day.
		e := r.newEnv(t, "CREATE TABLE {s}.days (d date, ts timestamp, tz timestamptz)")
		cet, nyc := time.FixedZone("CET", 3600), time.FixedZone("EST", -5*3600)
		for _, tc := range []struct {
			at        time.Time
			day, wall string
		}{
			{time.Date(2024, 1, 2, 0, 30, 0, 0, cet), "2024-01-02", "2024-01-01 23:30:00"},
			{time.Date(2024, 1, 2, 22, 0, 0, 0, nyc), "2024-01-02", "2024-01-03 03:00:00"},
			{time.Date(2024, 1, 2, 12, 0, 0, 0, time.UTC), "2024-01-02", "2024-01-02 12:00:00"},
		} {
			var day, wall string
			var back time.Time
			q := "SELECT $1::date::text, $2::timestamp::text, $3::timestamptz"
			if err := e.db.QueryRowContext(e.ctx, q, tc.at, tc.at, tc.at).Scan(&day, &wall, &back); err != nil {
				t.Fatalf("%v: %v", tc.at, err)
			}
			if day != tc.day || wall != tc.wall || !back.Equal(tc.at) {
				t.Errorf("%v as date, timestamp, timestamptz = %s, %s, %v; want %s, %s and the same instant", tc.at, day, wall, back, tc.day, tc.wall)
			}
			// The same through a table, in a transaction, and a prepared statement.
			err := e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
				if _, err := tx.ExecContext(e.ctx, "DELETE FROM "+e.schema+".days"); err != nil {
					return err
				}
				stmt, err := tx.PrepareContext(e.ctx, "INSERT INTO "+e.schema+".days VALUES ($1, $2, $3)")
				if err != nil {
					return err
				}
				defer stmt.Close()
				if _, err := stmt.ExecContext(e.ctx, tc.at, tc.at, tc.at); err != nil {
					return err
				}
				return tx.QueryRowContext(e.ctx, "SELECT d::text, ts::text FROM "+e.schema+".days").Scan(&day, &wall)
			})
			if err != nil {
				t.Fatal(err)
			}
			if day != tc.day || wall != tc.wall {
				t.Errorf("%v stored as date, timestamp = %s, %s; want %s, %s", tc.at, day, wall, tc.day, tc.wall)
			}
		}
	})
	r.test(t, "SystemIdentifiersAsInt64", func(t *testing.T) {
		// oid, xid and cid are unsigned 32-bit integers: int64 on both
		// drivers (pgx decodes them so; lib/pq gave their text), also as
		// catalog queries return them.
		e := r.newEnv(t)
		var oid, xid, cid, rel any
		q := "SELECT 4294967295::oid, '7'::xid, '3'::cid, (SELECT oid FROM pg_class WHERE relname = 'pg_class')"
		if err := e.db.QueryRowContext(e.ctx, q).Scan(&oid, &xid, &cid, &rel); err != nil {
			t.Fatal(err)
		}
		if oid != int64(4294967295) || xid != int64(7) || cid != int64(3) || rel != int64(1259) {
			t.Errorf("oid, xid, cid, pg_class's oid into any = %#v, %#v, %#v, %#v; want int64 4294967295, 7, 3, 1259", oid, xid, cid, rel)
		}
		var n uint32
		if err := e.db.QueryRowContext(e.ctx, "SELECT $1::oid", int64(42)).Scan(&n); err != nil || n != 42 {
			t.Errorf("oid argument and scan into uint32 = %d, %v; want 42", n, err)
		}
	})
	r.test(t, "OtherTypesAsStrings", func(t *testing.T) {
		// Values of types neither driver decodes (an enum here, hstore or
		// any extension type alike) come as a string, as on pgx, where
		// lib/pq alone gives []byte; so do time and timetz, which then
		// cannot be scanned into a *time.Time on either driver.
		e := r.newEnv(t, "CREATE TYPE {s}.mood AS ENUM ('happy', 'sad')")
		var mood, tm any
		q := "SELECT 'happy'::" + e.schema + ".mood, '12:00'::time"
		if err := e.db.QueryRowContext(e.ctx, q).Scan(&mood, &tm); err != nil {
			t.Fatal(err)
		}
		if mood != "happy" || tm != "12:00:00" {
			t.Errorf("enum, time into any = %#v, %#v; want the strings \"happy\", \"12:00:00\"", mood, tm)
		}
		var tt time.Time
		if err := e.db.QueryRowContext(e.ctx, "SELECT '12:00'::time").Scan(&tt); err == nil {
			t.Errorf("time scanned into *time.Time = %v, want an error (a string, on both drivers)", tt)
		}
	})
}

// byteaEscapeTests: bytea in PostgreSQL's escape output format
// (bytea_output = escape), which lib/pq reads and pgx reads only in binary
// results: in text results — every query without arguments, and every
// query in PgxExecMode simple_protocol — pgx alone fails with "invalid hex
// format".
func byteaEscapeTests(t *testing.T, r *run) {
	r.test(t, "ByteaEscapeOutput", func(t *testing.T) {
		want := []byte{0x5c, 0x78, 0x00, 0xff, 'a', 0x01, 0x08}
		e := r.newEnv(t, "CREATE TABLE {s}.b (v bytea)", `INSERT INTO {s}.b VALUES ('\x5c7800ff610108')`)
		tx, err := e.db.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(e.ctx, "SET LOCAL bytea_output = escape"); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"SELECT v FROM " + e.schema + ".b", nil},
			{"SELECT v FROM " + e.schema + ".b WHERE $1::bool", []any{true}},
			{"SELECT $1::bytea", []any{want}},
		} {
			var got any
			if err := tx.QueryRowContext(e.ctx, q.sql, q.args...).Scan(&got); err != nil {
				t.Errorf("%s: scan into any: %v", q.sql, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: scan into any = %#v, want %#v", q.sql, got, want)
			}
			var b []byte
			if err := tx.QueryRowContext(e.ctx, q.sql, q.args...).Scan(&b); err != nil || !reflect.DeepEqual(b, want) {
				t.Errorf("%s: scan into []byte = %#v, %v; want %#v", q.sql, b, err, want)
			}
		}
	})
}

// equalValues is reflect.DeepEqual, except that times must be the same
// instant in the same location.
func equalValues(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb) && ta.Location().String() == tb.Location().String()
	}
	return reflect.DeepEqual(a, b)
}
