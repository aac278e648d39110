package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Outcome is how a test ended.
type Outcome string

// Outcomes, as go test -json names them.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip"
)

// Result is one test's (or subtest's) outcome.
type Result struct {
	// Name is the test's name as go test prints it, subtests after "/",
	// prefixed with the package's path relative to the module root and a
	// "." outside the root package ("hstore.TestHstore").
	Name    string
	Outcome Outcome
	// Output holds the test's last lines of output.
	Output []string

	unfinished bool // started, never ended: the test binary died
}

// GoTest runs one module's tests with go test -json.
type GoTest struct {
	Dir        string        // module root
	ModulePath string        // its module path, to name packages relative to it
	Packages   []string      // package patterns, e.g. "./..." or "./stdlib"
	Env        []string      // the whole environment of the go command
	Timeout    time.Duration // go test -timeout of each run
	Skip       string        // go test -skip of each run, or ""
	// Log receives the go command's lines that are not test events
	// (build errors and the like).
	Log func(format string, args ...any)
	// JSONLog, when set, is a file that receives every go test -json line.
	JSONLog string
}

// maxRounds bounds the go test runs of one GoTest.Run.
const maxRounds = 40

// maxOutputLines bounds what a Result keeps of a test's output.
const maxOutputLines = 40

type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

// Run lists the tests, runs them and returns every test's result.
//
// A test binary that dies (a panic, os.Exit, log.Fatal) takes along the
// tests running beside the one that killed it and those after it. Those
// are run again, by name: a top-level test is started at most twice, and
// one that never ends in two runs (or never starts) is a failure. A test that
// timed out is not run again. A package that failed while all its tests
// passed (a check in TestMain) fails under the name "TestMain".
func (g GoTest) Run(ctx context.Context) ([]Result, error) {
	listed, err := g.list(ctx)
	if err != nil {
		return nil, err
	}
	isListed := map[string]bool{}
	for pkg, names := range listed {
		for _, n := range names {
			isListed[g.qualify(pkg, n)] = true
		}
	}
	got := map[string]Result{}
	var order []string
	runs := map[string]int{} // qualified top-level name → times run
	pkgs, run, rounds := g.Packages, "", 0
	for {
		res, panicked, timedOut, err := g.run(ctx, pkgs, run)
		if err != nil {
			return nil, err
		}
		unfinished := map[string]bool{}
		for _, r := range res {
			top, _, _ := strings.Cut(r.Name, "/")
			if r.unfinished && !timedOut {
				unfinished[top] = true
			}
		}
		for top := range panicked {
			delete(unfinished, top) // it killed the binary: running it again kills it again
		}
		for _, r := range res {
			top, _, _ := strings.Cut(r.Name, "/")
			if unfinished[top] && runs[top] < 1 {
				continue // killed by another test: run it again
			}
			if _, ok := got[r.Name]; !ok {
				order = append(order, r.Name)
			}
			got[r.Name] = r
		}
		// A run counts against a test unless another test's panic cut it
		// short; a panicking test ends each round, so rounds end.
		started := map[string]bool{}
		for _, r := range res {
			if top, _, _ := strings.Cut(r.Name, "/"); isListed[top] {
				started[top] = true
			}
		}
		for top := range started {
			if !unfinished[top] || len(panicked) == 0 {
				runs[top]++
			}
		}
		rounds++
		if len(started) == 0 || rounds >= maxRounds {
			break // the binary died before any test, or keeps dying: running it again changes nothing
		}
		missing := map[string][]string{} // package → top-level tests to run again
		for pkg, names := range listed {
			for _, n := range names {
				q := g.qualify(pkg, n)
				if _, ok := got[q]; !ok && runs[q] < 2 {
					missing[pkg] = append(missing[pkg], n)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		// One package at a time: each gets its own -run.
		pkg := sortedKeys(missing)[0]
		pkgs, run = []string{pkg}, "^("+quoteAll(missing[pkg])+")$"
	}
	for pkg, names := range listed {
		for _, n := range names {
			if q := g.qualify(pkg, n); !hasResult(got, q) {
				order = append(order, q)
				got[q] = Result{Name: q, Outcome: Fail, Output: []string{"peer: this test never ran to its end in two runs: the test binary died before or while it ran"}}
			}
		}
	}
	out := make([]Result, 0, len(order))
	for _, n := range order {
		out = append(out, got[n])
	}
	return out, nil
}

// hasResult reports whether test or one of its subtests has a result.
func hasResult(got map[string]Result, test string) bool {
	if _, ok := got[test]; ok {
		return true
	}
	for n := range got {
		if strings.HasPrefix(n, test+"/") {
			return true
		}
	}
	return false
}

// list returns the top-level tests, examples and fuzz targets of each
// package, by import path.
func (g GoTest) list(ctx context.Context) (map[string][]string, error) {
	args := append([]string{"test", "-json", "-list", ".", "-vet=off", "-trimpath"}, g.Packages...)
	events, stderr, _ := g.goCmd(ctx, args)
	listed := map[string][]string{}
	buildOut := map[string][]string{}
	name := regexp.MustCompile(`^(Test|Example|Fuzz)\w*$`)
	for _, e := range events {
		switch {
		case e.Action == "build-output":
			buildOut[e.ImportPath] = append(buildOut[e.ImportPath], e.Output)
		case e.Action == "build-fail":
			return nil, fmt.Errorf("go test -list could not build %s:\n%s%s", e.ImportPath, strings.Join(buildOut[e.ImportPath], ""), tail(stderr, 40))
		case e.Action == "fail" && e.Test == "" && len(listed[e.Package]) == 0:
			return nil, fmt.Errorf("go test -list failed for %s:\n%s", e.Package, tail(stderr, 60))
		}
		if e.Action == "output" && e.Test == "" {
			if n := strings.TrimSpace(e.Output); name.MatchString(n) {
				listed[e.Package] = append(listed[e.Package], n)
			}
		}
	}
	if g.Skip != "" {
		skip, err := regexp.Compile(g.Skip)
		if err != nil {
			return nil, err
		}
		for pkg, names := range listed {
			listed[pkg] = slices.DeleteFunc(names, skip.MatchString)
		}
	}
	if len(listed) == 0 {
		return nil, fmt.Errorf("go test -list found no tests in %s:\n%s", strings.Join(g.Packages, " "), tail(stderr, 60))
	}
	return listed, nil
}

// culprit finds, in a panic's goroutine trace, the test whose code
// panicked: the first frame of a Test, Example or Fuzz function or of a
// closure inside one. (go test -json attributes the trace to whichever test
// last wrote output, which with parallel tests is often another.)
var culprit = regexp.MustCompile(`\.((?:Test|Example|Fuzz)[A-Za-z0-9_]*)(?:\.func[0-9.]+)*\(`)

// run runs go test once and turns its events into results. panicked holds
// the (qualified) top-level tests whose panic killed a test binary;
// timedOut says whether a test binary hit -timeout.
func (g GoTest) run(ctx context.Context, pkgs []string, run string) (res []Result, panicked map[string]bool, timedOut bool, err error) {
	args := []string{"test", "-json", "-count=1", "-vet=off", "-trimpath", "-timeout", g.Timeout.String()}
	if run != "" {
		args = append(args, "-run", run)
	}
	if g.Skip != "" {
		args = append(args, "-skip", g.Skip)
	}
	args = append(args, pkgs...)
	events, stderr, err := g.goCmd(ctx, args)
	if ctx.Err() != nil {
		return nil, nil, false, fmt.Errorf("go test did not finish in time: %w", ctx.Err())
	}
	type state struct {
		started, ended bool
		outcome        Outcome
		output         []string
	}
	panicked = map[string]bool{}
	inPanic := map[string]bool{} // package → reading a panic's trace
	tests := map[string]*state{}
	var order []string
	pkgOut := map[string][]string{}
	pkgFailed := map[string]bool{}
	anyTest := false
	for _, e := range events {
		switch {
		case e.Action == "build-output":
			pkgOut[e.ImportPath] = append(pkgOut[e.ImportPath], e.Output)
			continue
		case e.Action == "build-fail":
			return nil, nil, false, fmt.Errorf("go test could not build %s:\n%s%s", e.ImportPath, strings.Join(pkgOut[e.ImportPath], ""), tail(stderr, 40))
		case e.Action == "output":
			// A panic's trace, whichever test go test gives it to.
			switch {
			case strings.HasPrefix(e.Output, "panic: test timed out after "):
				timedOut = true
			case strings.HasPrefix(e.Output, "panic: "):
				inPanic[e.Package] = true
			case inPanic[e.Package]:
				if m := culprit.FindStringSubmatch(e.Output); m != nil && !strings.HasPrefix(e.Output, "testing.") {
					panicked[g.qualify(e.Package, m[1])] = true
					inPanic[e.Package] = false
				}
			}
		}
		switch {
		case e.Test == "":
			switch e.Action {
			case "output":
				pkgOut[e.Package] = append(pkgOut[e.Package], e.Output)
			case "fail":
				pkgFailed[e.Package] = true
			}
			continue
		}
		anyTest = true
		key := g.qualify(e.Package, e.Test)
		s := tests[key]
		if s == nil {
			s = &state{}
			tests[key] = s
			order = append(order, key)
		}
		switch Outcome(e.Action) {
		case Pass, Fail, Skip:
			s.ended, s.outcome = true, Outcome(e.Action)
		}
		switch e.Action {
		case "run":
			s.started = true
		case "output":
			s.output = append(s.output, strings.TrimRight(e.Output, "\n"))
			if len(s.output) > 4*maxOutputLines {
				s.output = s.output[len(s.output)-maxOutputLines:]
			}
		}
	}
	if !anyTest && err != nil && len(pkgFailed) == 0 {
		return nil, nil, false, fmt.Errorf("go test failed: %v\n%s", err, tail(stderr, 40))
	}
	failedTests := map[string]bool{}
	for _, key := range order {
		s := tests[key]
		r := Result{Name: key, Outcome: s.outcome, Output: lastLines(s.output, maxOutputLines)}
		if !s.ended {
			r.Outcome, r.unfinished = Fail, true
			r.Output = append(r.Output, "peer: this test started and never ended (the test binary died: panic, os.Exit or timeout)")
		}
		if r.Outcome == Fail {
			failedTests[g.pkgOf(key)] = true
		}
		res = append(res, r)
	}
	for pkg := range pkgFailed {
		if !failedTests[g.qualify(pkg, "")] {
			res = append(res, Result{Name: g.qualify(pkg, "TestMain"), Outcome: Fail,
				Output: lastLines(append(pkgOut[pkg], "peer: the package failed although none of its tests did (TestMain, or a crash outside any test)"), maxOutputLines)})
		}
	}
	return res, panicked, timedOut, nil
}

// qualify names a test of pkg; with test "" it names the package prefix.
func (g GoTest) qualify(pkg, test string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, g.ModulePath), "/")
	if rel == "" {
		return test
	}
	return rel + "." + test
}

// pkgOf returns the package prefix of a qualified name ("" for the root).
func (g GoTest) pkgOf(name string) string {
	top, _, _ := strings.Cut(name, "/")
	if i := strings.LastIndex(top, "."); i >= 0 {
		return top[:i+1]
	}
	return ""
}

// goCmd runs the go command and decodes its JSON events; stderr and any
// non-JSON stdout lines are returned as text.
func (g GoTest) goCmd(ctx context.Context, args []string) ([]event, string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = g.Dir
	cmd.Env = g.Env
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if g.JSONLog != "" {
		if f, ferr := os.OpenFile(g.JSONLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); ferr == nil {
			f.Write(stdout.Bytes())
			f.Close()
		}
	}
	var events []event
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			stderr.Write(line)
			stderr.WriteByte('\n')
			continue
		}
		events = append(events, e)
	}
	if g.Log != nil {
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if l != "" {
				g.Log("go %s: %s", args[0], l)
			}
		}
	}
	return events, stderr.String(), err
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(q, "|")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return append([]string{fmt.Sprintf("… %d earlier lines", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return lines
}

func tail(s string, n int) string {
	return strings.Join(lastLines(strings.Split(strings.TrimRight(s, "\n"), "\n"), n), "\n")
}
