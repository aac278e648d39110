package peer

import (
	"bufio"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Category is why a test cannot pass through poolsafe on a transaction
// pooler. There are three.
type Category string

const (
	// DriverAPI: the test uses one driver's own API or types — *pgx.Conn,
	// stdlib options, pgxpool, pq.NewConnector, pq.Listener, CopyIn
	// internals, *pq.Error of the copy under test, the driver's wire
	// protocol against a scripted server — which a database/sql driver
	// wrapping either driver does not offer. It is expected in every mode.
	DriverAPI Category = "a"
	// SessionState: the test needs state that lives in one server session
	// across statements — temporary tables, LISTEN, backend PIDs, startup
	// parameters, SET outside a transaction, server-side prepared
	// statements — which no transaction pooler can keep. It is expected
	// in transaction mode only.
	SessionState Category = "b"
	// Deliberate: the test checks behaviour poolsafe changes on purpose,
	// the same on both drivers — values as the table in sqladapter's
	// documentation gives them (timestamptz in UTC, text-like values as
	// strings), a connection closed instead of a CancelRequest sent when a
	// context ends behind a pooler, a statement that may have run never
	// sent again, a bad connection string refused at sql.Open. It is
	// expected in every mode; where the behaviour is a pooler's only (no
	// CancelRequest), a pass outside transaction mode is reported, not
	// failed.
	Deliberate Category = "c"
)

// Entry is one line of the expected-failure list.
type Entry struct {
	Line     int
	Suite    string
	Drivers  []string // "pgx", "pq"
	Test     string   // path.Match pattern per "/"-separated level
	Category Category
	Reason   string
}

func (e Entry) String() string {
	return fmt.Sprintf("%s %s %s (%s: %s)", e.Suite, strings.Join(e.Drivers, ","), e.Test, e.Category, e.Reason)
}

// applies reports whether e is expected for suite on driver in mode.
func (e Entry) applies(suite, driver, mode string) bool {
	if e.Suite != suite || !slices.Contains(e.Drivers, driver) {
		return false
	}
	return e.Category != SessionState || mode == "transaction"
}

// covers reports whether test is e's test or one of its subtests.
func (e Entry) covers(test string) bool {
	pat := strings.Split(e.Test, "/")
	name := strings.Split(test, "/")
	if len(name) < len(pat) {
		return false
	}
	for i, p := range pat {
		if ok, _ := path.Match(p, name[i]); !ok {
			return false
		}
	}
	return true
}

// ParseExpected reads the expected-failure list: one entry a line,
//
//	suite  drivers  test  category  reason…
//
// with drivers "pgx", "pq" or "pgx,pq", category "a", "b" or "c", and a reason
// that runs to the end of the line. Blank lines and lines starting with
// "#" are ignored.
func ParseExpected(text string, suites []string) ([]Entry, error) {
	var out []Entry
	var errs []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			errs = append(errs, fmt.Sprintf("line %d: want suite, drivers, test, category and a reason", n))
			continue
		}
		e := Entry{Line: n, Suite: f[0], Drivers: strings.Split(f[1], ","), Test: f[2], Category: Category(f[3]),
			Reason: strings.Join(f[4:], " ")}
		if !slices.Contains(suites, e.Suite) {
			errs = append(errs, fmt.Sprintf("line %d: unknown suite %q", n, e.Suite))
		}
		for _, d := range e.Drivers {
			if d != "pgx" && d != "pq" {
				errs = append(errs, fmt.Sprintf("line %d: unknown driver %q", n, d))
			}
		}
		if e.Category != DriverAPI && e.Category != SessionState && e.Category != Deliberate {
			errs = append(errs, fmt.Sprintf("line %d: category must be a (driver-specific API), b (session state) or c (deliberate poolsafe behaviour), not %q", n, e.Category))
		}
		for _, p := range strings.Split(e.Test, "/") {
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Sprintf("line %d: bad test pattern %q", n, e.Test))
			}
		}
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("expected-failure list: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// Report is one suite run on one target, judged against the list.
type Report struct {
	Suite, Driver, Mode string
	// Passed, Failed (unexpectedly), Expected (failures the list names)
	// and Skipped hold the names of the counted tests: those without
	// subtests, and those that failed while none of their subtests did.
	Passed, Failed, Expected, Skipped []string
	// Failures are the unexpected failures with their output.
	Failures []Result
	// ExpectedPassed are category a entries, and category c entries in
	// transaction mode, all of whose tests passed: the list is wrong about
	// them (or an adapter fix made them pass).
	ExpectedPassed []Entry
	// Lucky are category b entries all of whose tests passed this time.
	// Whether session state survives from one statement to the next
	// depends on which server connection the pooler hands each one —
	// under the background load usually another, not always — so a pass
	// is reported but does not make the list wrong. Category c entries
	// that passed outside transaction mode are here too: some deliberate
	// behaviour is a pooler's only.
	Lucky []Entry
	// NotRun are entries that matched no test at all.
	NotRun []Entry
}

// Line is the one-line summary.
func (r *Report) Line() string {
	return fmt.Sprintf("peer %s %s/%s: %d passed, %d failed, %d expected", r.Suite, r.Driver, r.Mode,
		len(r.Passed), len(r.Failed), len(r.Expected))
}

// Judge classifies results against the entries that apply to the target.
func Judge(suite, driver, mode string, results []Result, list []Entry) *Report {
	r := &Report{Suite: suite, Driver: driver, Mode: mode}
	var entries []Entry
	for _, e := range list {
		if e.applies(suite, driver, mode) {
			entries = append(entries, e)
		}
	}
	hasChild, failedChild := map[string]bool{}, map[string]bool{}
	for _, res := range results {
		for p := parent(res.Name); p != ""; p = parent(p) {
			hasChild[p] = true
			if res.Outcome == Fail {
				failedChild[p] = true
			}
		}
	}
	covered := make([][]Outcome, len(entries))
	for _, res := range results {
		counted := !hasChild[res.Name] || (res.Outcome == Fail && !failedChild[res.Name])
		if !counted {
			continue
		}
		expected := false
		for i, e := range entries {
			if e.covers(res.Name) {
				covered[i] = append(covered[i], res.Outcome)
				expected = true
			}
		}
		switch {
		case res.Outcome == Skip:
			r.Skipped = append(r.Skipped, res.Name)
		case res.Outcome == Pass:
			r.Passed = append(r.Passed, res.Name)
		case expected:
			r.Expected = append(r.Expected, res.Name)
		default:
			r.Failed = append(r.Failed, res.Name)
			r.Failures = append(r.Failures, res)
		}
	}
	for i, e := range entries {
		switch {
		case len(covered[i]) == 0:
			r.NotRun = append(r.NotRun, e)
		case !slices.Contains(covered[i], Fail) && slices.Contains(covered[i], Pass):
			if e.Category == SessionState || e.Category == Deliberate && mode != "transaction" {
				r.Lucky = append(r.Lucky, e)
			} else {
				r.ExpectedPassed = append(r.ExpectedPassed, e)
			}
		}
	}
	return r
}

func parent(name string) string {
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return ""
	}
	return name[:i]
}
