package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/sqladapter"
)

var drivers = []driverconf.Driver{driverconf.PGX, driverconf.PQ}

// TestSpans runs queries, client-side prepared statements, transactions
// and failing statements through the transaction pooler on both
// drivers, and checks the spans otelsql records: every kind is there, each
// carries db.system and the driver and pool mode, and none holds an
// argument value or the password.
func TestSpans(t *testing.T) {
	urls := testdb.Get(t)
	password := passwordOf(t, urls.Tx)
	table := createTable(t, urls.Direct)
	for _, d := range drivers {
		t.Run(string(d), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			defer tp.Shutdown(context.Background())
			// otelsql records its metrics with the global meter provider.
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer mp.Shutdown(context.Background())
			otel.SetMeterProvider(mp)
			db, err := openTraced(driverconf.Config{URL: urls.Tx, Driver: d, PoolMode: driverconf.Transaction}, tp)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			testdb.Ping(t, db.DB.DB)

			// The distinctive argument: no span may contain it.
			arg := fmt.Sprintf("otel-arg-%s-%d", d, time.Now().UnixNano())
			insert := `INSERT INTO ` + table + ` (note) VALUES ($1)`

			// Queries.
			var got string
			if err := db.QueryRowContext(ctx, `SELECT $1::text`, arg).Scan(&got); err != nil || got != arg {
				t.Fatalf("query: %q, %v", got, err)
			}
			if _, err := db.ExecContext(ctx, insert, arg); err != nil {
				t.Fatalf("exec: %v", err)
			}
			// Stats has the connector's counters (sqladapter.WithConnector).
			if st := db.Stats(); st.Queries < 2 {
				t.Errorf("Stats().Queries = %d after two queries: the handle does not see the connector's counters", st.Queries)
			}

			// Prepared statements (client-side in transaction mode).
			ins, err := db.PrepareContext(ctx, insert)
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			defer ins.Close()
			if _, err := ins.ExecContext(ctx, arg+"-stmt"); err != nil {
				t.Fatalf("stmt exec: %v", err)
			}
			count, err := db.PrepareContext(ctx, `SELECT count(*) FROM `+table+` WHERE note LIKE $1 || '%'`)
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			defer count.Close()
			var n int
			if err := count.QueryRowContext(ctx, arg).Scan(&n); err != nil || n != 2 {
				t.Fatalf("stmt query: %d rows, %v", n, err)
			}

			// Transactions: one committed, with a setting, and one rolled back.
			err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
				var s string
				if err := tx.GetContext(ctx, &s, `SELECT current_setting('app.note')`); err != nil {
					return err
				}
				if s != arg {
					return fmt.Errorf("setting: got %q", s)
				}
				_, err := tx.ExecContext(ctx, insert, arg+"-tx")
				return err
			}, sqladapter.WithSetting("app.note", arg))
			if err != nil {
				t.Fatalf("InTx: %v", err)
			}
			errUndo := errors.New("undo")
			err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
				if _, err := tx.ExecContext(ctx, insert, arg+"-undone"); err != nil {
					return err
				}
				return errUndo
			})
			if !errors.Is(err, errUndo) {
				t.Fatalf("InTx rollback: %v", err)
			}

			// Failures: a unique violation, whose detail names the value,
			// and an argument PostgreSQL or the driver refuses to read as
			// an integer, whose message quotes it.
			if _, err := db.ExecContext(ctx, insert, arg); !errors.Is(err, sqladapter.ErrConflict) {
				t.Fatalf("duplicate insert: want ErrConflict, got %v", err)
			}
			if err := db.QueryRowContext(ctx, `SELECT $1::int`, arg).Scan(&n); err == nil {
				t.Fatal("invalid integer: no error")
			} else {
				t.Logf("invalid integer: %v (kind %s)", err, sqladapter.KindOf(err))
			}

			// A Go value the driver cannot encode: pgx's error prints it
			// (lib/pq's is database/sql's own, before any span).
			if _, err := db.ExecContext(ctx, insert, struct{ Note string }{arg}); err == nil {
				t.Fatal("struct argument: no error")
			} else {
				t.Logf("struct argument: %v (kind %s)", err, sqladapter.KindOf(err))
			}

			spans := sr.Ended()
			checkSpans(t, spans, d)
			checkNoSecrets(t, spans, arg, password)
			checkErrorMetric(t, reader, d)
		})
	}
}

// TestExample runs the example program itself, with -metrics, on both
// drivers and reads back what it printed.
func TestExample(t *testing.T) {
	urls := testdb.Get(t)
	for _, d := range drivers {
		t.Run(string(d), func(t *testing.T) {
			t.Setenv(driverconf.EnvDatabaseURL, urls.Tx)
			t.Setenv("DB_POOL_MODE", "transaction")
			t.Setenv("DB_DRIVER", string(d))
			var out bytes.Buffer
			if err := run(context.Background(), &out, true); err != nil {
				t.Fatal(err)
			}

			// stdouttrace prints one JSON object per span, stdoutmetric one
			// per export.
			spans := map[string]int{}
			metrics := map[string]bool{}
			dec := json.NewDecoder(&out)
			for {
				var o struct {
					Name       string
					Attributes []struct {
						Key   string
						Value struct{ Value any }
					}
					ScopeMetrics []struct{ Metrics []struct{ Name string } }
				}
				if err := dec.Decode(&o); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("output is not a stream of JSON objects: %v", err)
				}
				for _, sm := range o.ScopeMetrics {
					for _, m := range sm.Metrics {
						metrics[m.Name] = true
					}
				}
				if o.Name == "" {
					continue
				}
				spans[o.Name]++
				if o.Name == "tracing-example" {
					continue
				}
				attrs := map[string]any{}
				for _, a := range o.Attributes {
					attrs[a.Key] = a.Value.Value
				}
				if attrs["poolsafe.driver"] != string(d) || attrs["poolsafe.pool_mode"] != "transaction" || attrs["db.system"] != "postgresql" {
					t.Errorf("span %s: attributes %v", o.Name, attrs)
				}
			}
			t.Logf("printed spans %v", spans)
			for _, name := range []string{"tracing-example", "sql.conn.query", "sql.conn.prepare", "sql.stmt.query", "sql.conn.begin_tx", "sql.tx.commit"} {
				if spans[name] == 0 {
					t.Errorf("no %s span printed", name)
				}
			}
			for _, name := range []string{"db.client.operation.duration", "db.sql.connection.open"} {
				if !metrics[name] {
					t.Errorf("no %s metric printed (got %v)", name, metrics)
				}
			}
		})
	}
}

// checkSpans checks that the operations left the spans they should, and
// that every otelsql span carries the handle's attributes.
func checkSpans(t *testing.T, spans []sdktrace.ReadOnlySpan, d driverconf.Driver) {
	t.Helper()
	want := map[string]string{
		"db.system":          "postgresql",
		"db.system.name":     "postgresql",
		"poolsafe.driver":    string(d),
		"poolsafe.pool_mode": "transaction",
	}
	names := map[string]int{}
	var conflict, invalid sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.InstrumentationScope().Name != "github.com/XSAM/otelsql" {
			continue
		}
		names[s.Name()]++
		attrs := attrMap(s.Attributes())
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("span %s: %s = %q, want %q", s.Name(), k, attrs[k], v)
			}
		}
		switch attrs["poolsafe.error_kind"] {
		case "conflict":
			conflict = s
		case "invalid input":
			invalid = s
		}
	}
	t.Logf("%s spans: %v", d, names)
	for name, min := range map[string]int{
		"sql.conn.query":    2, // SELECT $1::text, SELECT $1::int
		"sql.conn.exec":     2, // INSERT, the failing INSERT
		"sql.conn.prepare":  2,
		"sql.stmt.exec":     1,
		"sql.stmt.query":    1,
		"sql.conn.begin_tx": 2,
		"sql.tx.commit":     1,
		"sql.tx.rollback":   1,
	} {
		if names[name] < min {
			t.Errorf("%d %s spans, want at least %d", names[name], name, min)
		}
	}

	if conflict == nil {
		t.Error("no span for the unique violation (poolsafe.error_kind=conflict)")
	} else {
		if got := attrMap(conflict.Attributes())["db.response.status_code"]; got != "23505" {
			t.Errorf("unique violation span: db.response.status_code = %q, want 23505", got)
		}
		if conflict.Status().Code.String() != "Error" || len(conflict.Events()) == 0 {
			t.Errorf("unique violation span: status %v, %d events; want the error recorded", conflict.Status(), len(conflict.Events()))
		}
	}
	if invalid == nil {
		t.Error("no span for the invalid integer (poolsafe.error_kind=invalid input)")
	} else if got := attrMap(invalid.Attributes())["db.response.status_code"]; got != "22P02" || len(invalid.Events()) != 0 {
		t.Errorf("invalid integer span: db.response.status_code = %q, %d events; want 22P02 and no message", got, len(invalid.Events()))
	}
}

// checkErrorMetric checks that otelsql's operation duration histogram
// counts the unique violation by its class, with the handle's attributes.
func checkErrorMetric(t *testing.T, reader sdkmetric.Reader, d driverconf.Driver) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if m.Name != "db.client.operation.duration" || !ok {
				continue
			}
			for _, p := range h.DataPoints {
				attrs := attrMap(p.Attributes.ToSlice())
				if attrs["poolsafe.error_kind"] == "conflict" && attrs["poolsafe.driver"] == string(d) &&
					attrs["db.operation.name"] == "sql.conn.exec" && p.Count == 1 {
					return
				}
			}
			t.Errorf("db.client.operation.duration: no point for the unique violation in %+v", h.DataPoints)
			return
		}
	}
	t.Error("no db.client.operation.duration metric")
}

// checkNoSecrets fails if any span's name, attributes, events, links,
// status or resource contains one of secrets.
func checkNoSecrets(t *testing.T, spans []sdktrace.ReadOnlySpan, secrets ...string) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatal("no spans")
	}
	for _, s := range spans {
		var texts []string
		add := func(where string, kvs []attribute.KeyValue) {
			for _, kv := range kvs {
				texts = append(texts, where+" "+string(kv.Key)+"="+kv.Value.String())
			}
		}
		texts = append(texts, "name "+s.Name(), "status "+s.Status().Description)
		add("attribute", s.Attributes())
		add("resource", s.Resource().Attributes())
		for _, e := range s.Events() {
			texts = append(texts, "event "+e.Name)
			add("event "+e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			add("link", l.Attributes)
		}
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("span %s: %s contains %q", s.Name(), text, secret)
				}
			}
		}
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// passwordOf returns the password in rawURL; the stack's URLs have one.
func passwordOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("%s: not a URL", testdb.EnvTxURL)
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		t.Fatalf("%s has no password to look for", testdb.EnvTxURL)
	}
	return pw
}

// createTable creates a table of its own over the direct URL (DDL does not
// belong on the transaction pooler) and drops it when the test ends.
func createTable(t *testing.T, directURL string) string {
	t.Helper()
	db, err := driverconf.Open(driverconf.Config{URL: directURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testdb.Ping(t, db.DB.DB)
	table := fmt.Sprintf("public.tracing_test_%d", time.Now().UnixNano())
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (id bigserial PRIMARY KEY, note text NOT NULL UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(`DROP TABLE ` + table); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
	})
	return table
}
