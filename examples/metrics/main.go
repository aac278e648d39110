// Command metrics exports a poolsafe database handle's statistics to
// Prometheus:
//
//   - sql.DBStats (open, in-use and idle connections, waits, closes) with
//     client_golang's ready-made collectors.NewDBStatsCollector, as the
//     go_sql_* metrics with the label db_name="poolsafe";
//   - poolsafe's own counters from db.Stats() — statements sent, failed
//     statements by error kind, transactions InTx retried — with a small
//     custom prometheus.Collector, as poolsafe_*.
//
// It runs a little load in the background (good queries, a division by
// zero, a statement timeout, a transaction that hits a serialization
// failure once and is retried) so the numbers move, and serves the metrics
// on http://127.0.0.1:9464/metrics until Ctrl-C. The address is loopback
// by default; -addr changes it.
//
// With DATABASE_URL set (DB_DRIVER, DB_POOL_MODE… as for driverconf.FromEnv):
//
//	go run ./examples/metrics                 # serve; curl -s 127.0.0.1:9464/metrics | grep -E '^(poolsafe|go_sql)_'
//	go run ./examples/metrics -once           # run the load, scrape once in-process, print, exit (for CI)
//
// Against the repository's local stack (make stack-up):
//
//	eval "$(bash scripts/pgstack.sh env)"
//	DATABASE_URL="$POOLSAFE_TEST_TX_URL" DB_POOL_MODE=transaction go run ./examples/metrics -once
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// dbName labels every metric of this handle (db_name="poolsafe"); use one
// name per *sql.DB when a program has several.
const dbName = "poolsafe"

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "address to serve /metrics on (keep it on loopback or a private network)")
	once := flag.Bool("once", false, "run the load once, scrape the handler in-process, print the metrics and exit")
	workers := flag.Int("workers", 4, "goroutines running the background load")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *once, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, once bool, workers int) error {
	cfg, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	// A registry of our own holds exactly these two collectors. (Register
	// them with prometheus.DefaultRegisterer instead to serve them next to
	// the Go runtime metrics.)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		// db is a *sqladapter.DB: db.DB is its *sqlx.DB, db.DB.DB the *sql.DB.
		collectors.NewDBStatsCollector(db.DB.DB, dbName),
		newStatsCollector(db, dbName),
	)
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	if once {
		return scrapeOnce(ctx, db, handler, workers)
	}

	// Listen first, so a busy port fails before any load starts.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs last: after cancel below has stopped the load
	defer cancel()
	for range workers {
		wg.Go(func() { loadLoop(ctx, db) })
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})

	log.Printf("serving http://%s/metrics — Ctrl-C to stop", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// scrapeOnce runs a fixed amount of load, then requests /metrics from the
// handler in-process (no listener) and prints the go_sql_* and poolsafe_*
// samples.
func scrapeOnce(ctx context.Context, db *sqladapter.DB, handler http.Handler, workers int) error {
	const rounds = 5
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for range rounds {
				if err := round(ctx, db); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	var found int
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "go_sql_") || strings.HasPrefix(line, "poolsafe_") {
			fmt.Print(line)
			found++
		}
	}
	// Fail loudly in CI if the load did not move the counters.
	s := db.Stats()
	switch {
	case found == 0:
		return errors.New("no go_sql_* or poolsafe_* metrics in the scrape")
	case s.Queries == 0, s.TxRetries < int64(workers*rounds),
		s.Errors[sqladapter.KindInvalidInput] == 0, s.Errors[sqladapter.KindTimeout] == 0:
		return fmt.Errorf("counters did not move as expected: %+v", s)
	}
	return nil
}

// loadLoop runs rounds until ctx ends.
func loadLoop(ctx context.Context, db *sqladapter.DB) {
	for ctx.Err() == nil {
		if err := round(ctx, db); err != nil && ctx.Err() == nil {
			log.Printf("load: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// simulatedSerializationFailure makes the server raise SQLSTATE 40001, as
// a conflicting SERIALIZABLE transaction would, with no table needed.
const simulatedSerializationFailure = `DO $$ BEGIN
	RAISE EXCEPTION 'simulated serialization failure' USING ERRCODE = 'serialization_failure';
END $$`

// round is one unit of load: good queries and the failures the counters
// classify. Expected failures are checked, so the round also shows how
// code tests for them.
func round(ctx context.Context, db *sqladapter.DB) error {
	for i := range 8 {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT $1::int + 1`, i).Scan(&n); err != nil {
			return err
		}
		if n != i+1 {
			return fmt.Errorf("SELECT %d + 1 returned %d", i, n)
		}
	}

	// Division by zero: SQLSTATE 22012, counted as kind "invalid_input".
	if _, err := db.ExecContext(ctx, `SELECT 1 / $1::int`, 0); !errors.Is(err, sqladapter.ErrInvalidInput) {
		return fmt.Errorf("division by zero: got %v, want ErrInvalidInput", err)
	}

	// A statement_timeout for this transaction only (set_config(…, true)
	// never outlives it, so it is safe behind a transaction pooler):
	// SQLSTATE 57014, counted as kind "timeout".
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_sleep(1)`)
		return err
	}, sqladapter.WithSetting("statement_timeout", "20ms"))
	if !errors.Is(err, sqladapter.ErrTimeout) {
		return fmt.Errorf("statement timeout: got %v, want ErrTimeout", err)
	}

	// A serialization failure on the first attempt: InTx rolls back, waits
	// a jittered moment and runs the function again (poolsafe_tx_retries_total).
	attempts := 0
	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
		attempts++
		q := `SELECT 1`
		if attempts == 1 {
			q = simulatedSerializationFailure
		}
		_, err := tx.ExecContext(ctx, q)
		return err
	})
	if err != nil || attempts != 2 {
		return fmt.Errorf("retried transaction: %d attempts, error %v", attempts, err)
	}
	return nil
}

// statsCollector exports poolsafe's counters from db.Stats(). The
// sql.DBStats half of those stats is left to collectors.NewDBStatsCollector.
// It reads the counters at scrape time (prometheus.MustNewConstMetric), so
// nothing has to keep them in sync.
type statsCollector struct {
	db                       *sqladapter.DB
	queries, errors, retries *prometheus.Desc
}

func newStatsCollector(db *sqladapter.DB, dbName string) *statsCollector {
	labels := prometheus.Labels{"db_name": dbName} // the same label as the go_sql_* metrics
	return &statsCollector{
		db: db,
		queries: prometheus.NewDesc("poolsafe_queries_total",
			"Statements sent to the database, failed ones included.", nil, labels),
		errors: prometheus.NewDesc("poolsafe_query_errors_total",
			"Failed statements by error kind (sqladapter.Kind).", []string{"kind"}, labels),
		retries: prometheus.NewDesc("poolsafe_tx_retries_total",
			"Transactions InTx ran again after a serialization failure, deadlock or connection failure.", nil, labels),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queries
	ch <- c.errors
	ch <- c.retries
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stats()
	ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(s.Queries))
	// Every kind, zeros included: a series that exists from the start makes
	// rate() and increase() see the first error.
	for k := sqladapter.KindUnknown; k <= sqladapter.KindPoolerIncompatible; k++ {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Errors[k]), kindLabel(k))
	}
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(s.TxRetries))
}

// kindLabel turns a Kind ("foreign key violation") into a label value
// ("foreign_key_violation").
func kindLabel(k sqladapter.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }
