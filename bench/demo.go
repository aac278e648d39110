package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
)

// demoRun is what `examples/demo -json` prints (the fields the report uses).
type demoRun struct {
	Domains         int    `json:"domains"`
	Flaky           int    `json:"flaky"`
	ServerConns     int    `json:"server_conns"`
	ServerConnsFrom string `json:"server_conns_from"`
	Drivers         []struct {
		Driver     string  `json:"driver"`
		Jobs       int64   `json:"jobs"`
		JobsPerSec float64 `json:"jobs_per_s"`
		Retries    int64   `json:"retries"`
	} `json:"drivers"`
	OK bool `json:"ok"`
}

// rate returns the jobs/s the demo printed for drv.
func (d demoRun) rate(drv string) (float64, bool) {
	for _, r := range d.Drivers {
		if r.Driver == drv {
			return r.JobsPerSec, true
		}
	}
	return 0, false
}

// demoResult is goal 4's table: the demo's printed jobs/s against the
// queue table's Jobs.Next loop on the same driver, in the same round.
type demoResult struct {
	args  []string              // the demo's flags
	fill  int                   // jobs queued before each loop run
	fail  int                   // the loop's failEvery
	demo  []demoRun             // one per round
	loops map[string][]queueRun // driver → one loop run per round
}

// The goal-4 contenders, rotated within each round.
const (
	dDemo    = "demo"
	dLoopPGX = "loop-pgx"
	dLoopPQ  = "loop-pq"
)

// measureDemo builds examples/demo once, then runs it and the queue table's
// Jobs.Next loop on each driver in every round, in rotated order.
func measureDemo(ctx context.Context, e *env, o options, m *machine) (*demoResult, error) {
	dir, err := os.MkdirTemp("", "poolsafe-bench-demo")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "demo")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/demo").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./examples/demo: %v\n%s", err, out)
	}
	res := &demoResult{args: []string{"-json", "-workers", strconv.Itoa(o.workers), "-claim", strconv.Itoa(o.claim)},
		fill: int(o.runTime.Seconds() * 25000), fail: 100, loops: map[string][]queueRun{}}
	if o.smoke {
		res.args, res.fill = append(res.args, "-short"), 2000
	}
	// The queue table's loop, as measureQueue runs it.
	cfg := loopConfig{workers: o.workers, claim: o.claim, lease: 30 * time.Second, failEvery: res.fail}
	order := []string{dDemo, dLoopPGX, dLoopPQ}
	for r := range o.rounds {
		for i := range order {
			name := order[(i+r)%len(order)]
			m.sample()
			switch name {
			case dDemo:
				d, err := e.runDemo(ctx, bin, res.args)
				if err != nil {
					return nil, err
				}
				res.demo = append(res.demo, d)
				pgx, _ := d.rate("pgx")
				pq, _ := d.rate("pq")
				fmt.Fprintf(os.Stderr, "demo round %d %-8s pgx %6.0f jobs/s, pq %6.0f jobs/s\n", r+1, name, pgx, pq)
			default:
				drv := driverconf.PGX
				if name == dLoopPQ {
					drv = driverconf.PQ
				}
				run, err := queueRun{}, e.fillJobs(ctx, res.fill, false)
				if err == nil {
					run, err = e.workerLoop(ctx, drv, cfg, o.runTime)
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				if run.statJobs >= int64(res.fill)*9/10 && !o.smoke {
					return nil, fmt.Errorf("%s: finished %d of the %d jobs queued: the queue ran dry, the rate is wrong", name, run.statJobs, res.fill)
				}
				res.loops[string(drv)] = append(res.loops[string(drv)], run)
				fmt.Fprintf(os.Stderr, "demo round %d %-8s %6.0f jobs/s\n", r+1, name, run.rate())
			}
			m.sample()
		}
	}
	return res, nil
}

// runDemo runs the demo binary through the transaction pool and reads its
// -json results; a demo that fails its checks fails the benchmark.
func (e *env) runDemo(ctx context.Context, bin string, args []string) (demoRun, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	// The caller's database settings must not reach the demo.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "PG") && !strings.HasPrefix(k, "DB_") && !strings.HasPrefix(k, "DATABASE_") && k != "DIRECT_URL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DATABASE_URL="+e.txURL, "DIRECT_URL="+e.directURL, "DB_POOL_MODE=transaction")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var d demoRun
	if jerr := json.Unmarshal(stdout.Bytes(), &d); err == nil && jerr != nil {
		err = fmt.Errorf("its -json output: %v", jerr)
	}
	if err == nil && !d.OK {
		err = fmt.Errorf("it reported a failed check")
	}
	if err == nil {
		for _, drv := range []string{"pgx", "pq"} {
			if _, ok := d.rate(drv); !ok {
				err = fmt.Errorf("no jobs/s for %s in its output", drv)
			}
		}
	}
	if err != nil {
		return demoRun{}, fmt.Errorf("examples/demo %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return d, nil
}

func (r *report) demoSection(b *strings.Builder) {
	b.WriteString("## Goal 4: the demo\n\n")
	d := r.demo
	if d == nil {
		b.WriteString("Not measured in this run (`-goals` without `demo`).\n\n")
		return
	}
	domains, flaky, conns, from := 0, 0, 0, ""
	if len(d.demo) > 0 {
		domains, flaky, conns, from = d.demo[0].Domains, d.demo[0].Flaky, d.demo[0].ServerConns, d.demo[0].ServerConnsFrom
	}
	fmt.Fprintf(b, "`examples/demo %s`, built once, against the queue table's poolsafe `Jobs.Next` loop on the same driver "+
		"(%d workers, claims of %d, %d jobs queued, %s per run), the demo and the two loops rotated within each round. "+
		"The demo runs each driver's pipeline on its own, one after the other: %d domains per driver in batches of up to 10,000, "+
		"%d workers looping on `Jobs.Next` with claims of %d, about one job in %d failing its first attempt (the loop's: one in %d) "+
		"and retried after a 20–200 ms backoff, every job read back and checked; its jobs/s, the figure compared, runs from the "+
		"first claim to the last batch's finish, so it includes the batches' draining end, which the loop's fixed time does not.\n\n",
		strings.Join(d.args, " "), r.opts.workers, r.opts.claim, d.fill, r.opts.runTime, domains, r.opts.workers, r.opts.claim, flaky, d.fail)
	b.WriteString("| driver | demo: jobs/s it printed | `Jobs.Next` loop: jobs/s | demo × loop |\n|---|---|---|---|\n")
	var verdicts []string
	for _, drv := range []string{"pgx", "pq"} {
		var demo, loop, ratio []float64
		for i, run := range d.demo {
			v, _ := run.rate(drv)
			demo = append(demo, v)
			if l := d.loops[drv]; len(l) > i {
				loop = append(loop, l[i].rate())
				ratio = append(ratio, v/l[i].rate())
			}
		}
		s := summarize(ratio)
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", drv, summarize(demo).num("%.0f"), summarize(loop).num("%.0f"), s.ratio())
		verdicts = append(verdicts, fmt.Sprintf("- %s: the demo at %s of the `Jobs.Next` loop (goal ≥ 0.8×: %s).\n", drv, s.ratio(), verdict(s.median >= 0.8)))
	}
	if conns > 0 {
		fmt.Fprintf(b, "\nThe demo's bound, as it prints it: the pool's %d server connections (%s).\n", conns, from)
	}
	b.WriteString("\nReproduce: `go run ./bench -goals demo` (add `-rounds 3 -benchtime 5s` for a shorter run); the demo alone: `make demo`.\n\n")
	for _, v := range verdicts {
		b.WriteString(v)
	}
	b.WriteString("\n")
}
