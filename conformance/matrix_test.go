package conformance_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/scrapersky/poolsafe/conformance"
	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

// TestMatrix runs the suite on {pgx exec, pgx simple_protocol, lib/pq} ×
// {direct, session pooler, transaction pooler} against the local stack,
// then compares scanned values across all targets.
func TestMatrix(t *testing.T) {
	u := testdb.GetUnlocked(t, true) // the suite locks each of its tests
	// Reads routed to the stack's replica go through its transaction pool.
	replica := u.ReplicaTx + "&pool_mode=transaction"
	var reports []*conformance.Report
	for _, m := range []struct {
		mode driverconf.PoolMode
		url  string
	}{{driverconf.Direct, u.Direct}, {driverconf.Session, u.Session}, {driverconf.Transaction, u.Tx}} {
		for _, d := range []struct {
			drv  driverconf.Driver
			exec driverconf.PgxExecMode
		}{{driverconf.PGX, driverconf.ExecModeExec}, {driverconf.PGX, driverconf.ExecModeSimpleProtocol}, {driverconf.PQ, ""}} {
			reports = append(reports, conformance.Run(t, conformance.Target{Config: driverconf.Config{
				URL: m.url, DirectURL: u.Direct, Driver: d.drv, PoolMode: m.mode, PgxExecMode: d.exec,
				MaxOpenConns: 16, MaxIdleConns: 16, ReplicaURLs: []string{replica},
			}}))
		}
	}
	t.Run("values-across-targets", func(t *testing.T) { conformance.CompareValues(t, reports...) })
	summary := conformance.Summaries(reports)
	fmt.Print(summary)
	if path := os.Getenv("POOLSAFE_CONFORMANCE_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(summary), 0o644); err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
	if len(reports) != 9 {
		t.Errorf("%d targets ran, want 9", len(reports))
	}
	for _, r := range reports {
		if r.Passed == 0 {
			t.Errorf("target %s ran no test", r.Target)
		}
	}
}

// TestExternal runs the suite against your own database and pooler:
//
//	POOLSAFE_CONFORMANCE_URL       the URL under test (e.g. a pooler on port 6543)
//	POOLSAFE_CONFORMANCE_DIRECT_URL a session-capable URL to the same database
//	POOLSAFE_CONFORMANCE_MODE      direct, session or transaction (default: inferred)
//
// on both drivers. It is skipped when POOLSAFE_CONFORMANCE_URL is unset.
func TestExternal(t *testing.T) {
	url, direct := os.Getenv("POOLSAFE_CONFORMANCE_URL"), os.Getenv("POOLSAFE_CONFORMANCE_DIRECT_URL")
	if url == "" {
		t.Skip("POOLSAFE_CONFORMANCE_URL is not set: nothing external to check")
	}
	if direct == "" {
		t.Fatal("POOLSAFE_CONFORMANCE_DIRECT_URL must be set too (a direct or session-mode URL to the same database)")
	}
	var reports []*conformance.Report
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		reports = append(reports, conformance.Run(t, conformance.Target{Config: driverconf.Config{
			URL: url, DirectURL: direct, Driver: d, PoolMode: driverconf.PoolMode(os.Getenv("POOLSAFE_CONFORMANCE_MODE")),
		}}))
	}
	t.Run("values-across-targets", func(t *testing.T) { conformance.CompareValues(t, reports...) })
	fmt.Print(conformance.Summaries(reports))
}
