package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/scrapersky/poolsafe/conformance"
	"github.com/scrapersky/poolsafe/driverconf"
)

// checkOptions are check's arguments.
type checkOptions struct {
	url, direct, driver, mode string
	json                      bool
}

func parseCheck(args []string, stderr io.Writer) (checkOptions, error) {
	var o checkOptions
	fs := flag.NewFlagSet("poolsafe check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.direct, "direct", os.Getenv(driverconf.EnvDirectURL), "a session-capable URL to the same database, where the checks create their schemas (default $DIRECT_URL; needed in transaction mode)")
	fs.StringVar(&o.driver, "driver", "both", "pgx, pq or both")
	fs.StringVar(&o.mode, "mode", "", "direct, session or transaction (default: inferred from the URL)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	// Flags may come before or after the URL.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(pos) {
	case 0:
		o.url = os.Getenv(driverconf.EnvDatabaseURL)
		if o.url == "" {
			return o, fmt.Errorf("no URL: give one, or set %s", driverconf.EnvDatabaseURL)
		}
	case 1:
		o.url = pos[0]
	default:
		return o, fmt.Errorf("one URL expected, got %d arguments", len(pos))
	}
	switch o.driver {
	case "pgx", "pq", "both":
	default:
		return o, fmt.Errorf("--driver is %q: want pgx, pq or both", o.driver)
	}
	return o, nil
}

// targetResult is one driver's line of the result.
type targetResult struct {
	Target      string                  `json:"target"`
	Driver      string                  `json:"driver"`
	Passed      int                     `json:"passed"`
	Failed      int                     `json:"failed"`
	Skipped     int                     `json:"skipped"`
	FailedTests []string                `json:"failed_tests,omitempty"`
	NamedParse  int                     `json:"named_parse"`
	RoundTrips  int                     `json:"round_trips"`
	RawDefaults []conformance.RawResult `json:"raw_defaults,omitempty"`
}

type checkResult struct {
	URL     string         `json:"url"` // password redacted
	Mode    string         `json:"pool_mode"`
	ModeBy  string         `json:"pool_mode_from"` // "url", "flag" or "default"
	OK      bool           `json:"ok"`
	Targets []targetResult `json:"targets"`
}

func check(args []string, stdout, stderr io.Writer) int {
	o, err := parseCheck(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "poolsafe check: %v\n", err)
		return exitUsage
	}
	cfgs, err := checkConfigs(o)
	if err != nil {
		fmt.Fprintf(stderr, "poolsafe check: %v\n", err)
		return exitUsage
	}
	if err := reachable(cfgs[0]); err != nil {
		fmt.Fprintf(stderr, "poolsafe check: %v\n", err)
		return exitUsage
	}
	res := checkResult{URL: driverconf.RedactURL(o.url), Mode: string(cfgs[0].WithDefaults().PoolMode), ModeBy: "url"}
	if o.mode != "" {
		res.ModeBy = "flag"
	} else if p, _ := driverconf.Parse(o.url); p.PoolMode == "" {
		res.ModeBy = "default"
	}
	if !o.json {
		fmt.Fprintf(stdout, "poolsafe check %s (%s mode)\n", res.URL, res.Mode)
	}
	// The suite is a set of Go tests: run them with the testing package,
	// whose own output (failures and their logs) goes to stderr.
	progress := newProgress(stderr)
	suite := func(t *testing.T) {
		var reports []*conformance.Report
		for _, cfg := range cfgs {
			reports = append(reports, conformance.Run(t, conformance.Target{Config: cfg, Progress: progress.update}))
			progress.done()
		}
		if len(reports) > 1 {
			t.Run("values-across-drivers", func(t *testing.T) { conformance.CompareValues(t, reports...) })
		}
		res.OK = !t.Failed()
		for i, r := range reports {
			res.Targets = append(res.Targets, targetResult{
				Target: r.Target, Driver: string(cfgs[i].Driver),
				Passed: r.Passed, Failed: r.Failed, Skipped: r.Skipped, FailedTests: r.FailedTests,
				NamedParse: r.Wire.NamedParse, RoundTrips: r.Wire.RoundTrips(), RawDefaults: r.RawDefaults,
			})
		}
		if o.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(res)
		} else {
			printCheck(stdout, res)
		}
	}
	testing.Init()
	for k, v := range map[string]string{"test.timeout": "30m", "test.v": "false"} {
		_ = flag.Set(k, v)
	}
	os.Args = os.Args[:1]
	os.Stdout = os.Stderr
	testing.Main(func(pat, str string) (bool, error) { return true, nil },
		[]testing.InternalTest{{Name: "poolsafe_check", F: suite}}, nil, nil) // exits: 0 passed, 1 failed
	return exitFailed // not reached
}

// checkConfigs returns one Config per driver to check.
func checkConfigs(o checkOptions) ([]driverconf.Config, error) {
	base, err := driverconf.Parse(o.url)
	if err != nil {
		return nil, err
	}
	if o.mode != "" {
		base.PoolMode = driverconf.PoolMode(o.mode)
	}
	mode := base.WithDefaults().PoolMode
	base.DirectURL = o.direct
	if base.DirectURL == "" {
		if mode == driverconf.Transaction {
			return nil, fmt.Errorf("--direct (or $%s) is required in transaction mode: a session-capable URL "+
				"to the same database (a direct or session-pooler URL), where the checks create and drop their schemas", driverconf.EnvDirectURL)
		}
		base.DirectURL = o.url
	}
	base.MaxOpenConns, base.MaxIdleConns = 16, 16
	var cfgs []driverconf.Config
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		if o.driver == "both" || o.driver == string(d) {
			c := base
			c.Driver = d
			if err := c.Validate(); err != nil {
				return nil, err
			}
			cfgs = append(cfgs, c)
		}
	}
	return cfgs, nil
}

// reachable fails fast, with the reason, when the URL or the direct URL
// cannot be reached.
func reachable(cfg driverconf.Config) error {
	direct, err := cfg.Direct()
	if err != nil {
		return err
	}
	for _, c := range []driverconf.Config{cfg, direct} {
		c.ConnectTimeout = 5 * time.Second
		db, err := driverconf.Open(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
		if err != nil {
			return fmt.Errorf("cannot reach %s: %v", driverconf.RedactURL(c.URL), err)
		}
	}
	return nil
}

func printCheck(w io.Writer, res checkResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "driver\tpassed\tfailed\tskipped\tnamed statements on the wire\tround trips\t")
	for _, t := range res.Targets {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", t.Driver, t.Passed, t.Failed, t.Skipped, t.NamedParse, t.RoundTrips)
	}
	tw.Flush()
	for _, t := range res.Targets {
		for _, name := range t.FailedTests {
			fmt.Fprintf(w, "FAILED %s: %s (details above, on stderr)\n", t.Driver, name)
		}
	}
	var raw []conformance.RawResult
	for _, t := range res.Targets {
		if len(t.RawDefaults) > 0 {
			raw = t.RawDefaults
			break
		}
	}
	if len(raw) == 0 {
		fmt.Fprintf(w, "\nraw drivers' defaults: not exercised in %s mode, where each client keeps its server connection\n", res.Mode)
	} else {
		fmt.Fprintln(w, "\nwhat the raw drivers' defaults did here, under the same load (the negative control):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "driver\tqueries\terrors\twrong answers\te.g.")
		for _, r := range raw {
			name := r.Driver
			if name == "postgres" {
				name = "lib/pq"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", name, r.Queries, r.Errors, r.Wrong, shorten(r.Sample, 90))
		}
		tw.Flush()
	}
	if res.OK {
		fmt.Fprintln(w, "\nOK: poolsafe is safe here on every driver checked")
	} else {
		fmt.Fprintln(w, "\nFAIL: see the failed checks above")
		if res.ModeBy == "default" {
			fmt.Fprintf(w, "nothing said which pool mode this is, so it was taken as %s: if a pooler is in front, "+
				"say --mode session or --mode transaction (or pool_mode=… in the URL) and check again\n", res.Mode)
		}
	}
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// progress shows the running counts on a terminal, one line per target
// elsewhere.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	last conformance.Progress
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(s conformance.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = s
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s: %d passed, %d failed, %d skipped", s.Target, s.Passed, s.Failed, s.Skipped)
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.last
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "checked %s: %d passed, %d failed, %d skipped\n", s.Target, s.Passed, s.Failed, s.Skipped)
}
