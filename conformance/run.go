package conformance

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/scrapersky/poolsafe/internal/wiretap"
)

// Report is what one Run saw.
type Report struct {
	Target                  string
	Passed, Failed, Skipped int
	// Wire counts every frontend message the target's handles sent during
	// the run (zero when the URL could not be tapped).
	Wire wiretap.Counts
	// Values maps each value case to the Go value scanned on this target,
	// for comparison across targets (see CompareValues).
	Values map[string]any
	// RawDefaults is the negative control: what each raw driver, with its
	// own defaults, did under the adapter tests' concurrent load ("pgx",
	// "postgres"), run alone on the pooler.
	// Empty when the target keeps one server connection per client
	// connection (direct and session mode), where the defaults are safe.
	RawDefaults []RawResult
	// FailedTests names the tests that failed ("<topic>/<test>").
	FailedTests []string
}

// RawResult counts what a raw driver's defaults did in the negative control.
type RawResult struct {
	Driver                 string // database/sql driver name: "pgx" or "postgres" (lib/pq)
	Queries, Errors, Wrong int64  // Wrong: answers that belonged to another query
	Sample                 string // one failure, as the driver reported it
}

// Summary is the one-line result: "conformance pgx/transaction: 40 passed,
// 0 failed, 2 skipped; wire: 0 named Parse, 5321 round trips".
func (r *Report) Summary() string {
	return fmt.Sprintf("conformance %s: %d passed, %d failed, %d skipped; wire: %d named Parse, %d round trips",
		r.Target, r.Passed, r.Failed, r.Skipped, r.Wire.NamedParse, r.Wire.RoundTrips())
}

// topic is one file's worth of tests.
type topic struct {
	name string
	fn   func(t *testing.T, r *run)
}

var topics = []topic{
	{"adapter", adapterTests},
	{"errors", errorTests},
	{"values", valueTests},
	{"statements", statementTests},
	{"hostility", hostilityTests},
	{"wire", wireTests},
	{"repos", repoTests},
	{"replicas", replicaTests},
}

// Run runs the whole suite against target as subtests named
// "<target>/<topic>/<test>", and returns its report once they are done.
// Topics and tests run in parallel, except the negative control, which
// runs alone (see exclusive.go): no other test of a target that swaps
// server connections runs at the same time, in this process or in another
// on the same database.
func Run(t *testing.T, target Target) *Report {
	t.Helper()
	return runTopics(t, target, topics)
}

func runTopics(t *testing.T, target Target, topics []topic) *Report {
	t.Helper()
	r := &run{target: target, values: map[string]any{}}
	rep := &Report{Target: target.name()}
	t.Run(target.name(), func(t *testing.T) {
		if err := check(target); err != nil {
			t.Fatal(err)
		}
		tap, err := startTap(target.Config.URL)
		if err != nil {
			t.Fatal(err)
		}
		r.tap = tap
		t.Cleanup(func() {
			if r.tap != nil {
				rep.Wire = r.tap.Counts()
				r.tap.Close()
			}
			r.mu.Lock()
			rep.Passed, rep.Failed, rep.Skipped = r.passed, r.failed, r.skipped
			rep.Values = r.values
			rep.RawDefaults = r.raw
			rep.FailedTests = r.failedTests
			r.mu.Unlock()
			if r.target.swapsConnections() && rep.Wire.NamedParse > 0 {
				rep.Failed++
				t.Errorf("wire: %d named Parse messages during the run (e.g. %q), want 0 through a transaction pooler",
					rep.Wire.NamedParse, rep.Wire.NamedStatements)
			}
			t.Log(rep.Summary())
		})
		for _, tp := range topics {
			t.Run(tp.name, func(t *testing.T) {
				t.Parallel()
				tp.fn(t, r)
			})
		}
	})
	return rep
}

func check(tg Target) error {
	if tg.Config.DirectURL == "" {
		return errors.New("conformance: Target.Config.DirectURL is required: the suite creates a schema per test there")
	}
	return tg.Config.Validate()
}

// test runs fn as a parallel subtest and counts its outcome. fn must not
// start subtests: it holds the shared lock of exclusive.go.
func (r *run) test(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	r.subtest(t, name, false, fn)
}

// testAlone is test for the negative control: no other test of a target
// that swaps server connections runs while fn does.
func (r *run) testAlone(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	r.subtest(t, name, true, fn)
}

func (r *run) subtest(t *testing.T, name string, alone bool, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		// Registered first, this runs last: a test that failed to get
		// its lock is counted too.
		t.Cleanup(func() {
			r.mu.Lock()
			switch {
			case t.Failed():
				r.failed++
				_, name, _ := strings.Cut(t.Name(), r.target.name()+"/")
				r.failedTests = append(r.failedTests, name)
			case t.Skipped():
				r.skipped++
			default:
				r.passed++
			}
			p := Progress{Target: r.target.name(), Test: t.Name(), Passed: r.passed, Failed: r.failed, Skipped: r.skipped}
			r.mu.Unlock()
			if r.target.Progress != nil {
				r.target.Progress(p)
			}
		})
		if alone {
			r.holdAlone(t)
		} else {
			r.holdShared(t)
		}
		fn(t)
	})
}

// CompareValues fails t for every value case whose scanned Go value
// differs between the reports' targets.
func CompareValues(t *testing.T, reports ...*Report) {
	t.Helper()
	cases := map[string]bool{}
	for _, rep := range reports {
		for k := range rep.Values {
			cases[k] = true
		}
	}
	names := make([]string, 0, len(cases))
	for k := range cases {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		var first *Report
		for _, rep := range reports {
			v, ok := rep.Values[name]
			if !ok {
				continue
			}
			if first == nil {
				first = rep
				continue
			}
			if !equalValues(v, first.Values[name]) {
				t.Errorf("value %s: %s scans %#v, %s scans %#v", name, rep.Target, v, first.Target, first.Values[name])
			}
		}
	}
}

// Summaries joins the reports' summary lines.
func Summaries(reports []*Report) string {
	var b strings.Builder
	for _, r := range reports {
		b.WriteString(r.Summary())
		b.WriteByte('\n')
	}
	return b.String()
}
