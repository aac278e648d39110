// Command tracing traces every query of a poolsafe handle with OpenTelemetry,
// through github.com/XSAM/otelsql rather than hand-written spans:
//
//	driverconf.FromEnv → driverconf.NewConnector → otelsql.OpenDB → sqladapter.Wrap
//
// otelsql wraps the pooler-safe connector, so it sees exactly the calls the
// application makes: a span for every query (sql.conn.query, sql.conn.exec),
// for a prepared statement's prepare and runs (sql.conn.prepare,
// sql.stmt.query, sql.stmt.exec — client-side statements in transaction mode,
// traced like any other), and for transactions (sql.conn.begin_tx,
// sql.tx.commit, sql.tx.rollback). Every span carries db.system.name (and
// its older name db.system) = postgresql, poolsafe.driver (pgx or pq) and
// poolsafe.pool_mode (direct, session or transaction). Spans hold the SQL
// text (db.query.text) but never argument values; a failed statement gets
// its error class and SQLSTATE as attributes, and its message only when the
// message cannot quote an argument (see recordError).
//
// The program runs a query, a prepared statement three times and an InTx
// transaction under one parent span, and prints the spans as JSON with the
// stdout exporter. With -metrics it also prints otelsql's metrics once at
// exit: sql.DBStats (db.sql.connection.*) and db.client.operation.duration.
// In a service, replace the exporters with OTLP ones
// (go.opentelemetry.io/otel/exporters/otlp/…) and keep the rest.
//
// Against the repository's local stack (make stack-up):
//
//	eval "$(bash scripts/pgstack.sh env)"
//	DATABASE_URL="$POOLSAFE_TEST_TX_URL" DB_POOL_MODE=transaction go run ./examples/tracing
//	DATABASE_URL=… DB_POOL_MODE=transaction DB_DRIVER=pq go run ./examples/tracing -metrics
//	… | jq -c 'select(.Name | startswith("sql.")) | {Name, Attributes: [.Attributes[] | "\(.Key)=\(.Value.Value)"]}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0" // the version otelsql uses
	"go.opentelemetry.io/otel/trace"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

func main() {
	metrics := flag.Bool("metrics", false, "also print otelsql's metrics at exit: sql.DBStats and db.client.operation.duration")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *metrics); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, metrics bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	// 1. A tracer provider that prints every span as it ends.
	exp, err := stdouttrace.New(stdouttrace.WithWriter(out), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)) // a service uses WithBatcher
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)

	var mp *sdkmetric.MeterProvider
	if metrics {
		mexp, err := stdoutmetric.New(stdoutmetric.WithWriter(out), stdoutmetric.WithPrettyPrint())
		if err != nil {
			return err
		}
		mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)))
		otel.SetMeterProvider(mp) // otelsql records db.client.operation.duration here
	}

	// 2. The handle: the configuration as usual, then the connector through
	// otelsql.
	cfg, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	db, err := openTraced(cfg, tp)
	if err != nil {
		return err
	}
	defer db.Close()
	if mp != nil {
		// sql.DBStats as db.sql.connection.* gauges and counters.
		reg, err := otelsql.RegisterDBStatsMetrics(db.DB.DB, otelsql.WithMeterProvider(mp),
			otelsql.WithAttributes(attributes(cfg)...))
		if err != nil {
			return err
		}
		defer reg.Unregister()
		defer mp.Shutdown(context.Background()) // runs first: exports the metrics once
	}

	// 3. Some work under one parent span.
	ctx, span := tp.Tracer("poolsafe/examples/tracing").Start(ctx, "tracing-example")
	defer span.End()
	return work(ctx, db)
}

// openTraced opens cfg through otelsql. Pool sizing is not part of a
// connector, so it is applied here as driverconf.Open would.
func openTraced(cfg driverconf.Config, tp trace.TracerProvider) (*sqladapter.DB, error) {
	cfg = cfg.WithDefaults() // resolves Driver and PoolMode for the attributes
	c, err := driverconf.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	sqlDB := otelsql.OpenDB(c,
		otelsql.WithTracerProvider(tp),
		otelsql.WithAttributes(attributes(cfg)...),
		otelsql.WithSpanErrorAttributesGetter(errorAttributes),
		otelsql.WithInstrumentErrorAttributesGetter(errorAttributes),
		otelsql.WithSpanOptions(otelsql.SpanOptions{
			OmitConnResetSession: true, // one span per connection reuse: noise
			RecordError:          recordError,
		}),
	)
	sqlDB.SetMaxOpenConns(cfg.MaxOpenConns)
	sqlDB.SetMaxIdleConns(cfg.MaxIdleConns)
	sqlDB.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	sqlDB.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
	// The connector's counters (Stats) and cfg.AcquireTimeout, as driverconf.Open gives them.
	return sqladapter.Wrap(sqlDB, sqladapter.WithConnector(c)), nil
}

// attributes go on every span (and metric) of the handle.
func attributes(cfg driverconf.Config) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.DBSystemNamePostgreSQL, // db.system.name, the current name
		// db.system, its name before semantic conventions 1.30, which many
		// dashboards still group by.
		attribute.String("db.system", "postgresql"),
		attribute.String("poolsafe.driver", string(cfg.Driver)),
		attribute.String("poolsafe.pool_mode", string(cfg.PoolMode)),
	}
}

// errorAttributes describe a failed statement by its class, the same on
// both drivers, and its SQLSTATE.
func errorAttributes(err error) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("poolsafe.error_kind", sqladapter.KindOf(err).String())}
	var e *sqladapter.Error
	if errors.As(err, &e) && e.SQLState != "" {
		attrs = append(attrs, semconv.DBResponseStatusCode(e.SQLState))
	}
	return attrs
}

// recordError says whether otelsql may record err's message on the span
// (an "exception" event, and status Error). Two kinds of message quote an
// argument's value: PostgreSQL's data exceptions (class 22, such as
// `invalid input syntax for type integer: "…"`) and a driver's failure to
// encode an argument (pgx prints the Go value; poolsafe does not classify
// it). Those spans keep only errorAttributes; the caller still gets the
// error.
func recordError(err error) bool {
	var e *sqladapter.Error
	return errors.As(err, &e) && e.Kind != sqladapter.KindInvalidInput
}

// work runs a query, a prepared statement and a transaction.
func work(ctx context.Context, db *sqladapter.DB) error {
	// A query with an argument: sql.conn.query and sql.rows spans.
	var greeting string
	if err := db.QueryRowContext(ctx, `SELECT 'hello, ' || $1::text`, "tracing").Scan(&greeting); err != nil {
		return err
	}

	// A prepared statement: in transaction mode it lives in the client, so
	// sql.conn.prepare checks the SQL and each run is one sql.stmt.query.
	stmt, err := db.PrepareContext(ctx, `SELECT $1::int * $1::int`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	var squares []int
	for i := 1; i <= 3; i++ {
		var sq int
		if err := stmt.QueryRowContext(ctx, i).Scan(&sq); err != nil {
			return err
		}
		squares = append(squares, sq)
	}

	// A transaction: sql.conn.begin_tx, the statements, sql.tx.commit.
	var tenant string
	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
		return tx.GetContext(ctx, &tenant, `SELECT current_setting('app.tenant_id')`)
	}, sqladapter.WithSetting("app.tenant_id", "tenant-42"))
	if err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "tracing: %q, squares %v, tenant %q\n", greeting, squares, tenant)
	return nil
}
