package sqladapter_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
)

type valueCase struct {
	name  string
	col   string // column type
	arg   any
	want  any        // what a scan into `any` gives, on every target
	typed func() any // a typed destination (pointer)
}

func ptr[T any](v T) *T { return &v }

var plus2 = time.FixedZone("plus2", 2*3600)

// valueCases are the rows of the table in the package documentation,
// plus plain types that must simply agree.
var valueCases = []valueCase{
	{"int2", "int2", int64(7), int64(7), func() any { return new(int16) }},
	{"int4", "int4", 42, int64(42), func() any { return new(int32) }},
	{"int8", "int8", int64(1) << 40, int64(1) << 40, func() any { return new(int64) }},
	{"numeric", "numeric", "1.50", "1.50", func() any { return new(string) }},
	{"float4", "float4", 1.5, 1.5, func() any { return new(float32) }},
	{"float8", "float8", 2.25, 2.25, func() any { return new(float64) }},
	{"bool", "bool", true, true, func() any { return new(bool) }},
	{"text", "text", "héllo", "héllo", func() any { return new(string) }},
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
	{"date", "date", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), func() any { return new(time.Time) }},
	{"time", "time", "03:04:05.25", "03:04:05.25", func() any { return new(string) }},
	{"interval-duration", "interval", 90 * time.Minute, "01:30:00", func() any { return new(string) }},
	{"interval-string", "interval", "1 day 02:00:00", "1 day 02:00:00", func() any { return new(string) }},
	{"text-array", "text[]", []string{"a", "b c"}, `{a,"b c"}`, func() any { return new(string) }},
	{"int8-array", "int8[]", []int64{1, 2}, "{1,2}", func() any { return new(string) }},
	{"inet", "inet", "10.0.0.1", "10.0.0.1", func() any { return new(string) }},
	{"null-int", "int4", nil, nil, func() any { return new(sql.NullInt64) }},
	{"null-pointer", "text", (*string)(nil), nil, func() any { return new(*string) }},
	{"pointer", "text", ptr("p"), "p", func() any { return new(*string) }},
	{"null-string", "text", sql.NullString{}, nil, func() any { return new(sql.NullString) }},
	{"valid-null-string", "text", sql.NullString{String: "x", Valid: true}, "x", func() any { return new(sql.NullString) }},
	{"null-time", "timestamptz", sql.NullTime{}, nil, func() any { return new(sql.NullTime) }},
}

// TestValueParity stores every case through every target and checks that
// the value scanned into `any` is the documented one, and that the typed
// scan gives equal Go values on every target.
func TestValueParity(t *testing.T) {
	ddl := "CREATE TABLE {s}.vals (target text, name text, "
	for i, c := range valueCases {
		ddl += fmt.Sprintf("c%d %s, ", i, c.col)
	}
	ddl += "PRIMARY KEY (target, name))"
	s := schema(t, ddl)

	var (
		mu    sync.Mutex
		typed = map[string]map[string]any{} // case → target → value
	)
	// lib/pq scans timestamptz in the session's zone: add a target whose
	// session is not in UTC.
	u := targets(t)[0].cfg.URL
	tgs := append(targets(t), target{name: "pq-kolkata/direct", cfg: driverconf.Config{
		URL: u, Driver: driverconf.PQ, PoolMode: driverconf.Direct, Settings: map[string]string{"TimeZone": "Asia/Kolkata"},
	}})
	t.Run("targets", func(t *testing.T) {
		for _, tg := range tgs {
			t.Run(tg.name, func(t *testing.T) {
				t.Parallel()
				db := open(t, tg.cfg)
				ctx := context.Background()
				for i, c := range valueCases {
					col := fmt.Sprintf("c%d", i)
					_, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s.vals (target, name, %s) VALUES ($1, $2, $3)", s, col), tg.name, c.name, c.arg)
					if err != nil {
						t.Errorf("%s: insert %T: %v", c.name, c.arg, err)
						continue
					}
					q := fmt.Sprintf("SELECT %s FROM %s.vals WHERE target = $1 AND name = $2", col, s)
					var got any
					if err := db.QueryRowContext(ctx, q, tg.name, c.name).Scan(&got); err != nil {
						t.Errorf("%s: scan any: %v", c.name, err)
						continue
					}
					if !reflect.DeepEqual(got, c.want) {
						t.Errorf("%s: scan into any = %#v (%T), want %#v (%T)", c.name, got, got, c.want, c.want)
					}
					if tm, ok := got.(time.Time); ok && tm.Location() != time.UTC {
						t.Errorf("%s: time in %v, want UTC", c.name, tm.Location())
					}
					dst := c.typed()
					if err := db.QueryRowContext(ctx, q, tg.name, c.name).Scan(dst); err != nil {
						t.Errorf("%s: scan %T: %v", c.name, dst, err)
						continue
					}
					mu.Lock()
					if typed[c.name] == nil {
						typed[c.name] = map[string]any{}
					}
					typed[c.name][tg.name] = reflect.ValueOf(dst).Elem().Interface()
					mu.Unlock()
				}
			})
		}
	})
	for _, c := range valueCases {
		var first string
		var firstV any
		for tgName, v := range typed[c.name] {
			if first == "" {
				first, firstV = tgName, v
				continue
			}
			if !reflect.DeepEqual(v, firstV) {
				t.Errorf("%s: typed scan differs: %s gives %#v, %s gives %#v", c.name, tgName, v, first, firstV)
			}
		}
	}
	// The stored data agree too: compare the text form of every row.
	db := open(t, targets(t)[0].cfg)
	rows, err := db.QueryContext(context.Background(), fmt.Sprintf("SELECT name, count(DISTINCT (vals.*)::text) FROM (SELECT name, %s FROM %s.vals) vals GROUP BY name HAVING count(DISTINCT (vals.*)::text) > 1", colList(), s))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("%s: stored %d different values across targets", name, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func colList() string {
	s := ""
	for i := range valueCases {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("c%d", i)
	}
	return s
}
