// Command bench measures poolsafe side by side with its anchors and writes
// the benchmark report (bench/REPORT.md): every figure is a ratio against an
// anchor measured in the same run, in interleaved rounds, because absolute
// numbers on a shared machine are noise. See bench/README.md.
//
//	eval "$(bash scripts/pgstack.sh env)"
//	go run ./bench                        # the full report, about a quarter of an hour
//	go run ./bench -rounds 1 -benchtime 1x # a smoke run (CI), seconds
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

type options struct {
	rounds  int
	runTime time.Duration // per measured run
	smoke   bool          // -benchtime Nx: as short as possible, timings not judged
	goals   map[string]bool
	out     string
	workers int
	claim   int
	// contenders, when set, are the queue contenders to run (by name).
	contenders string
}

func main() {
	var o options
	var benchtime, goals string
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds of every measurement")
	flag.IntVar(&o.rounds, "count", 5, "same as -rounds (go test's name, for BENCHFLAGS)")
	flag.StringVar(&benchtime, "benchtime", "10s", "time per measured run; `Nx` (go test's iteration form) makes a smoke run: minimal work, timings not judged")
	flag.StringVar(&goals, "goals", "queue,adapter,bulk,demo", "which tables to measure: queue, adapter, bulk, demo")
	flag.StringVar(&o.out, "o", "", "write the report to this file too (make bench: bench/REPORT.md)")
	flag.IntVar(&o.workers, "workers", 8, "workers (pgbench clients) of the queue benchmarks")
	flag.IntVar(&o.claim, "claim", 20, "jobs per claim of the queue benchmarks")
	cpuprofile := flag.String("cpuprofile", "", "write this process's CPU profile to `file`")
	flag.StringVar(&o.contenders, "contenders", "", "only these queue contenders, comma-separated ("+strings.Join(queueContenders, ", ")+")")
	flag.Parse()
	if strings.HasSuffix(benchtime, "x") {
		if _, err := strconv.Atoi(strings.TrimSuffix(benchtime, "x")); err != nil {
			fail(fmt.Errorf("-benchtime %q: want a duration or Nx", benchtime))
		}
		o.smoke, o.runTime = true, time.Second
	} else {
		d, err := time.ParseDuration(benchtime)
		if err != nil || d < time.Second {
			fail(fmt.Errorf("-benchtime %q: want a duration of at least 1s, or Nx", benchtime))
		}
		o.runTime = d
	}
	if o.rounds < 1 {
		fail(fmt.Errorf("-rounds must be at least 1"))
	}
	o.goals = map[string]bool{}
	for _, g := range strings.Split(goals, ",") {
		switch g = strings.TrimSpace(g); g {
		case "queue", "adapter", "bulk", "demo":
			o.goals[g] = true
		case "":
		default:
			fail(fmt.Errorf("-goals: unknown %q (queue, adapter, bulk, demo)", g))
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		pprof.StopCPUProfile()
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func run(ctx context.Context, o options) error {
	e, err := newEnv(ctx)
	if err != nil {
		return err
	}
	defer e.close()
	if err := e.setup(ctx); err != nil {
		return err
	}
	m := newMachine()
	rep := &report{opts: o, machine: m, started: time.Now()}
	if o.goals["queue"] {
		if rep.queue, err = measureQueue(ctx, e, o, m); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	if o.goals["bulk"] {
		if rep.bulk, err = measureBulk(ctx, e, o, m); err != nil {
			return fmt.Errorf("bulk: %w", err)
		}
	}
	if o.goals["adapter"] {
		if rep.adapter, err = measureAdapter(ctx, e, o, m); err != nil {
			return fmt.Errorf("adapter: %w", err)
		}
	}
	if o.goals["demo"] {
		if rep.demo, err = measureDemo(ctx, e, o, m); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(text), 0o644)
	}
	return nil
}
