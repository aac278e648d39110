package conformance

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/wiretap"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// Target is one driver and pool mode to run the suite against.
type Target struct {
	// Name labels subtests and the summary line. Defaults to
	// "<driver>[-<pgx exec mode>]/<pool mode>".
	Name string
	// Config opens the database under test: URL (direct, session pooler or
	// transaction pooler), Driver, PoolMode, PgxExecMode. DirectURL must
	// reach the same database with a session: the suite creates and drops
	// its schemas there.
	Config driverconf.Config
	// Progress, when set, is called after each test with the counts so
	// far, from the test's goroutine (tests run in parallel).
	Progress func(Progress)
}

// Progress is the state of a Run after one of its tests ended.
type Progress struct {
	Target, Test            string // Test: the full test name of the one that ended
	Passed, Failed, Skipped int
}

func (tg Target) name() string {
	if tg.Name != "" {
		return tg.Name
	}
	c := tg.Config.WithDefaults()
	d := string(c.Driver)
	if c.Driver == driverconf.PGX && c.PgxExecMode != driverconf.ExecModeExec {
		d += "-" + string(c.PgxExecMode)
	}
	return d + "/" + string(c.PoolMode)
}

// swapsConnections reports whether consecutive statements may run on
// different server connections (a transaction pooler).
func (tg Target) swapsConnections() bool {
	return tg.Config.WithDefaults().PoolMode == driverconf.Transaction
}

// run is the state of one Run.
type run struct {
	target Target
	tap    *wiretap.Tap // in front of the URL under test, for the whole run

	mu                      sync.Mutex
	passed, failed, skipped int
	values                  map[string]any // value case → scanned value
	raw                     []RawResult    // the negative control's
	failedTests             []string
}

// env is what one test works with.
type env struct {
	db     *sqladapter.DB
	cfg    driverconf.Config // opens db (through the tap)
	raw    driverconf.Config // the URL under test without the tap
	schema string            // created for this test, dropped after it
	direct *sql.DB           // DirectURL, for setup and observation
	ctx    context.Context
}

// newEnv creates a schema for one test and opens the target through the
// run's tap. ddl runs over DirectURL with {s} replaced by the schema.
func (r *run) newEnv(t *testing.T, ddl ...string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	direct, err := sql.Open(driverconf.DriverName, r.target.Config.DirectURL)
	if err != nil {
		t.Fatalf("DirectURL: %v", err)
	}
	t.Cleanup(func() { direct.Close() })
	pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
	defer pcancel()
	if err := direct.PingContext(pctx); err != nil {
		t.Fatalf("DirectURL unreachable: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "conf_" + hex.EncodeToString(b[:])
	if _, err := direct.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if _, err := direct.ExecContext(cctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	for _, d := range ddl {
		if _, err := direct.ExecContext(ctx, strings.ReplaceAll(d, "{s}", schema)); err != nil {
			t.Fatalf("setup %q: %v", d, err)
		}
	}
	e := &env{raw: r.target.Config, schema: schema, direct: direct, ctx: ctx}
	e.cfg = r.tapped(t, r.target.Config)
	e.db = openDB(t, e.cfg)
	return e
}

// tapped returns cfg with its URL pointed at the run's tap.
func (r *run) tapped(t *testing.T, cfg driverconf.Config) driverconf.Config {
	t.Helper()
	if r.tap == nil {
		return cfg
	}
	u, err := r.tap.Rewrite(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL = u
	return cfg
}

func openDB(t *testing.T, cfg driverconf.Config) *sqladapter.DB {
	t.Helper()
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatalf("driverconf.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("database unreachable: %v", err)
	}
	return db
}

// startTap puts a wire tap in front of a postgres:// URL's host, when the
// URL has one.
func startTap(rawURL string) (*wiretap.Tap, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.Contains(u.Host, ",") {
		return nil, nil // key=value DSNs and multi-host URLs run without a tap
	}
	host := u.Host
	if u.Port() == "" {
		host += ":5432"
	}
	tap, err := wiretap.Start(host)
	if err != nil {
		return nil, fmt.Errorf("start wire tap: %w", err)
	}
	return tap, nil
}
