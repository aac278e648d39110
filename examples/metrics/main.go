// Command metrics exports a poolsafe database handle's statistics to
// Prometheus:
//
//   - sql.DBStats (open, in-use and idle connections, waits) with
//     client_golang's ready-made collectors.NewDBStatsCollector, as the
//     go_sql_* metrics with the label db_name="poolsafe";
//   - poolsafe's own counters from db.Stats() — statements sent, failed
//     statements by error kind, transactions InTx retried and, with read
//     replicas (DATABASE_REPLICA_URLS), each replica's state, lag and reads
//     — with a small prometheus.Collector, as poolsafe_*.
//
// A little load runs in the background so that the numbers move: good
// queries, a division by zero, a statement timeout, and a transaction that
// hits a serialization failure once and is retried. With DATABASE_URL set
// (DB_DRIVER, DB_POOL_MODE… as for driverconf.FromEnv):
//
//	go run ./examples/metrics         # serve http://127.0.0.1:9464/metrics until Ctrl-C
//	go run ./examples/metrics -once   # run the load a few times, print one scrape and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// dbName labels every metric of this handle; use one name per handle when a
// program has several.
const dbName = "poolsafe"

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "address to serve /metrics on (keep it on loopback or a private network)")
	once := flag.Bool("once", false, "run the load a few times, print one scrape of /metrics and exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *once); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, once bool) error {
	cfg, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer, next to the Go runtime metrics
	reg.MustRegister(
		collectors.NewDBStatsCollector(db.DB.DB, dbName), // db.DB is the *sqlx.DB, db.DB.DB the *sql.DB
		newStatsCollector(db),
	)
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	if once {
		for range 5 {
			if err := load(ctx, db); err != nil {
				return err
			}
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for line := range strings.Lines(rec.Body.String()) {
			if strings.HasPrefix(line, "go_sql_") || strings.HasPrefix(line, "poolsafe_") {
				fmt.Print(line)
			}
		}
		if s := db.Stats(); s.TxRetries < 5 || s.Errors[sqladapter.KindInvalidInput] < 5 || s.Errors[sqladapter.KindTimeout] < 5 {
			return fmt.Errorf("the counters did not move as expected: %+v", s)
		}
		return nil
	}

	go func() {
		for ctx.Err() == nil {
			if err := load(ctx, db); err != nil && ctx.Err() == nil {
				log.Printf("load: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { srv.Close() })
	log.Printf("serving http://%s/metrics — Ctrl-C to stop", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// load is one round of work for the counters: good queries and the failures
// they classify, each checked the way application code tests for it.
func load(ctx context.Context, db *sqladapter.DB) error {
	for i := range 8 {
		var n int
		// Reads that may be a little stale go through db.Reader: to a
		// replica when DATABASE_REPLICA_URLS names one, else the primary.
		if err := db.Reader(ctx).QueryRowContext(ctx, `SELECT $1::int + 1`, i).Scan(&n); err != nil || n != i+1 {
			return fmt.Errorf("SELECT %d + 1: got %d, %v", i, n, err)
		}
	}
	// Division by zero: SQLSTATE 22012, kind "invalid_input".
	if _, err := db.ExecContext(ctx, `SELECT 1 / $1::int`, 0); !errors.Is(err, sqladapter.ErrInvalidInput) {
		return fmt.Errorf("division by zero: got %v, want ErrInvalidInput", err)
	}
	// A statement_timeout for this transaction only (set_config(…, true),
	// safe behind a transaction pooler): SQLSTATE 57014, kind "timeout".
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_sleep(1)`)
		return err
	}, sqladapter.WithSetting("statement_timeout", "20ms"))
	if !errors.Is(err, sqladapter.ErrTimeout) {
		return fmt.Errorf("statement timeout: got %v, want ErrTimeout", err)
	}
	// A serialization failure (SQLSTATE 40001, raised by hand here) on the
	// first attempt: InTx rolls back and runs the function again.
	attempts := 0
	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
		attempts++
		q := `SELECT 1`
		if attempts == 1 {
			q = `DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = 'serialization_failure'; END $$`
		}
		_, err := tx.ExecContext(ctx, q)
		return err
	})
	if err != nil || attempts != 2 {
		return fmt.Errorf("retried transaction: %d attempts, error %v", attempts, err)
	}
	return nil
}

// statsCollector exports poolsafe's counters from db.Stats() at scrape
// time, so nothing has to keep them in sync. (The sql.DBStats half of those
// stats is collectors.NewDBStatsCollector's.)
type statsCollector struct {
	db                       *sqladapter.DB
	queries, errors, retries *prometheus.Desc
	// Read replicas (Config.ReplicaURLs, DATABASE_REPLICA_URLS), if any.
	replicaUp, replicaLag, replicaReads, primaryReads *prometheus.Desc
}

func newStatsCollector(db *sqladapter.DB) *statsCollector {
	labels := prometheus.Labels{"db_name": dbName} // the same label as the go_sql_* metrics
	return &statsCollector{
		db: db,
		queries: prometheus.NewDesc("poolsafe_queries_total",
			"Statements sent to the database, failed ones included.", nil, labels),
		errors: prometheus.NewDesc("poolsafe_query_errors_total",
			"Failed statements by error kind (sqladapter.Kind).", []string{"kind"}, labels),
		retries: prometheus.NewDesc("poolsafe_tx_retries_total",
			"Transactions InTx ran again after a serialization failure, deadlock or connection failure.", nil, labels),
		replicaUp: prometheus.NewDesc("poolsafe_replica_up",
			"1 when the replica is in rotation for reads, else 0; state says why.", []string{"replica", "state"}, labels),
		replicaLag: prometheus.NewDesc("poolsafe_replica_lag_seconds",
			"How far the replica's replay is behind, as of its last health check.", []string{"replica"}, labels),
		replicaReads: prometheus.NewDesc("poolsafe_replica_reads_total",
			"Reads routed to the replica.", []string{"replica"}, labels),
		primaryReads: prometheus.NewDesc("poolsafe_replica_fallback_reads_total",
			"Reads that asked for a replica and went to the primary because none qualified.", nil, labels),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queries
	ch <- c.errors
	ch <- c.retries
	ch <- c.replicaUp
	ch <- c.replicaLag
	ch <- c.replicaReads
	ch <- c.primaryReads
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stats()
	ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(s.Queries))
	// Every kind, zeros included: a series that exists from the start lets
	// rate() and increase() see the first error.
	for k := sqladapter.KindUnknown; k <= sqladapter.KindPoolerIncompatible; k++ {
		kind := strings.ReplaceAll(k.String(), " ", "_") // "foreign key violation" → foreign_key_violation
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors[k]), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(s.TxRetries))
	if len(s.Replicas) == 0 {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.primaryReads, prometheus.CounterValue, float64(s.PrimaryReads))
	for _, r := range s.Replicas { // r.Name is the URL without its password
		up := 0.0
		if r.State == sqladapter.ReplicaUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.replicaUp, prometheus.GaugeValue, up, r.Name, r.State)
		ch <- prometheus.MustNewConstMetric(c.replicaLag, prometheus.GaugeValue, r.Lag.Seconds(), r.Name)
		ch <- prometheus.MustNewConstMetric(c.replicaReads, prometheus.CounterValue, float64(r.Reads), r.Name)
	}
}
