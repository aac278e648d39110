package faults

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the oracle's driver, over the direct URL

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/faultproxy"
	"github.com/scrapersky/poolsafe/repo"
)

// scenario is one fault, run on each driver in turn against a fresh tenant.
type scenario struct {
	name string
	// workers defaults to 8, conns (MaxOpenConns) to workers+2.
	workers, conns int
	// shortFrac of the calls get a 1 ms deadline while arm's window lasts.
	shortFrac float64
	// stackFault says the fault stops or restarts a server: the pooler
	// guard leaves PgBouncer alone while it is injected.
	stackFault bool
	// arm runs before the workload starts.
	arm func(f *faultCtx)
	// inject runs alongside the workload and returns when the fault is
	// over; an error says the fault could not be injected as planned.
	inject func(f *faultCtx) error
}

// faultCtx is what a scenario's fault works with.
type faultCtx struct {
	stack *stack
	proxy *faultproxy.Proxy
	p     *pipeline
}

// scenarios are the faults, in the order they run. Timings are relative to
// the workload's start; without faults a run takes about 2 s, batches being
// created during the first 1.5 s.
func scenarios() []scenario {
	return []scenario{
		{name: "baseline"},
		{
			name: "cut-all",
			inject: func(f *faultCtx) error {
				time.Sleep(300 * time.Millisecond)
				cut := 0
				for range 8 {
					cut += f.proxy.CutAll()
					time.Sleep(250 * time.Millisecond)
				}
				if cut == 0 {
					return errors.New("CutAll found no connection to cut")
				}
				return nil
			},
		},
		{
			name: "cut-nth",
			inject: func(f *faultCtx) error {
				time.Sleep(200 * time.Millisecond)
				f.proxy.CutEvery(53) // every 53rd client message, for 2.5 s
				time.Sleep(2500 * time.Millisecond)
				f.proxy.Clear()
				if f.proxy.Stats().Cuts == 0 {
					return errors.New("no connection was cut")
				}
				return nil
			},
		},
		{
			name: "cut-mid-commit",
			arm: func(f *faultCtx) {
				// Every COMMIT that makes a batch's finish durable (the
				// statement before it answered b_just_finished = true)
				// for the whole run, and every 10th other COMMIT during
				// the first 2.5 s.
				var n atomic.Int64
				until := time.Now().Add(2500 * time.Millisecond)
				f.proxy.CutMidCommit(-1, func(r *faultproxy.Request) bool {
					return r.Prev.Bool("b_just_finished") || time.Now().Before(until) && n.Add(1)%10 == 0
				})
			},
			inject: func(f *faultCtx) error {
				time.Sleep(2500 * time.Millisecond)
				if f.proxy.Stats().MidCommitCuts == 0 {
					return errors.New("no COMMIT was cut")
				}
				return nil
			},
		},
		{
			name: "swallow-answer",
			arm: func(f *faultCtx) {
				// The first Batches.Create: the batch is written, its
				// answer never arrives.
				f.proxy.SwallowAnswer(1, func(r *faultproxy.Request) bool {
					return r.Contains("insert into") && r.Contains(".batches")
				})
			},
			inject: func(f *faultCtx) error {
				for deadline := time.Now().Add(10 * time.Second); f.proxy.Stats().Swallowed == 0; {
					if time.Now().After(deadline) {
						return errors.New("the Create's answer was never swallowed (no request matched)")
					}
					time.Sleep(10 * time.Millisecond)
				}
				return nil
			},
		},
		{
			name: "stall-12s",
			inject: func(f *faultCtx) error {
				time.Sleep(300 * time.Millisecond)
				f.proxy.Stall(12 * time.Second)
				time.Sleep(12 * time.Second)
				return nil
			},
		},
		{
			name: "drop-1pct",
			inject: func(f *faultCtx) error {
				time.Sleep(200 * time.Millisecond)
				f.proxy.Drop(0.01, 42)
				time.Sleep(3 * time.Second)
				f.proxy.Drop(0, 0)
				if f.proxy.Stats().Dropped == 0 {
					return errors.New("no message was dropped")
				}
				return nil
			},
		},
		{
			name:       "pooler-restart",
			stackFault: true,
			inject: func(f *faultCtx) error {
				time.Sleep(400 * time.Millisecond)
				if _, err := f.stack.run(time.Minute, "kill-bouncer"); err != nil {
					return err
				}
				time.Sleep(time.Second)
				_, err := f.stack.run(2*time.Minute, "start-bouncer")
				return err
			},
		},
		{
			name:       "pg-restart-fast",
			stackFault: true,
			inject: func(f *faultCtx) error {
				time.Sleep(400 * time.Millisecond)
				_, err := f.stack.run(2*time.Minute, "restart-pg", "fast")
				return err
			},
		},
		{
			name:       "pg-crash",
			stackFault: true,
			inject: func(f *faultCtx) error {
				time.Sleep(400 * time.Millisecond)
				_, err := f.stack.run(2*time.Minute, "restart-pg", "immediate")
				return err
			},
		},
		{
			name:      "deadline-1ms-30pct",
			shortFrac: 0.3,
			arm: func(f *faultCtx) {
				f.p.shortUntil.Store(time.Now().Add(3 * time.Second).UnixNano())
			},
			inject: func(f *faultCtx) error {
				time.Sleep(3 * time.Second)
				return nil
			},
		},
		{name: "64-goroutines-4-conns", workers: 64, conns: 4},
	}
}

// TestFaults runs every scenario on pgx, then lib/pq, through the fault
// proxy in front of PgBouncer's transaction pool, and checks from the
// database what each run left behind.
func TestFaults(t *testing.T) {
	st := startStack(t)
	began := time.Now()
	ctx := context.Background()

	direct, err := sql.Open("pgx", st.directURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	cfg, err := driverconf.Parse(st.txURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PoolMode, cfg.DirectURL = driverconf.Transaction, st.directURL
	if err := repo.Migrate(ctx, cfg, repo.WithSchema(schema)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := direct.ExecContext(ctx, sqlExecLog); err != nil {
		t.Fatalf("execution log: %v", err)
	}
	if err := st.durableCommits(ctx, direct); err != nil {
		t.Fatalf("synchronous_commit: %v", err)
	}
	if err := st.check(); err != nil {
		t.Fatalf("the pooler check fails before any fault: %v", err)
	}

	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
				t.Run(string(d), func(t *testing.T) { runScenario(t, st, direct, sc, d) })
			}
		})
	}
	t.Logf("fault suite ran in %v", time.Since(began).Round(time.Second))
}

// runScenario runs the pipeline on one driver with one fault, prints the
// scenario's line and checks the outcome.
func runScenario(t *testing.T, st *stack, direct *sql.DB, sc scenario, d driverconf.Driver) {
	proxy, err := faultproxy.New(st.bouncerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxied, err := proxy.Rewrite(st.txURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := driverconf.Parse(proxied)
	if err != nil {
		t.Fatal(err)
	}
	workers := orDefault(sc.workers, 8)
	conns := orDefault(sc.conns, workers+2)
	cfg.Driver, cfg.PoolMode, cfg.DirectURL = d, driverconf.Transaction, st.directURL
	cfg.MaxOpenConns, cfg.MaxIdleConns = conns, conns
	cfg.ApplicationName = "faults"
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	p := newPipeline(sc.name, d, db, workers)
	p.shortFrac = sc.shortFrac
	f := &faultCtx{stack: st, proxy: proxy, p: p}
	if sc.arm != nil {
		sc.arm(f)
	}

	lag := startLagMonitor()
	start := time.Now()
	var wg sync.WaitGroup
	spawn := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	spawn(p.produce)
	for i := range workers {
		name := fmt.Sprintf("%s/%s/w%02d", sc.name, d, i)
		spawn(func() { p.work(name) })
	}
	spawn(p.rescue)
	spawn(func() { guardPooler(st, p) })

	// The fault, then how long the handle takes to answer again.
	var (
		faultErr, recoveryErr error
		recovery              time.Duration
		faultDone             = make(chan struct{})
	)
	go func() {
		defer close(faultDone)
		if sc.inject == nil {
			return // nothing to recover from: recovery 0
		}
		p.faultLive.Store(sc.stackFault)
		faultErr = sc.inject(f)
		p.faultLive.Store(false)
		recovery, recoveryErr = probe(p)
	}()

	finished := waitFinished(direct, p, start)
	p.halt()
	wg.Wait()
	<-faultDone
	time.Sleep(250 * time.Millisecond) // past the sweep's minimum age
	p.sweep()                          // the reconciler's last pass: no notice stays unclaimed
	elapsed := time.Since(start)

	// The same handle, never reopened, must still work.
	var left int
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	finalErr := db.QueryRowContext(fctx, `SELECT count(*) FROM `+schema+`.jobs WHERE tenant_id = $1`, p.tenant).Scan(&left)
	cancel()
	db.Close()
	stats := proxy.Stats()
	lag.close()
	hung, starved, starvedLag := p.judgeOverruns(lag)

	vctx, vcancel := context.WithTimeout(context.Background(), 30*time.Second)
	v, verifyErr := p.verify(vctx, direct)
	vcancel()
	fmt.Printf("fault %s %s: jobs %d, lost %d, doubled %d, duplicate writes %d, recovery %.2fs\n",
		sc.name, d, v.jobs, v.lost, v.doubled, v.dupWrites, recovery.Seconds())
	t.Logf("ran %v: %d calls, %d failed, %d hung (worst %v past its deadline), %d late while the process waited for a CPU "+
		"(scheduling lag up to %v, worst in the run %v); batches created %d (%d by a repeated Create); "+
		"proxy: %d connections, %d cut, %d mid-COMMIT, %d swallowed, %d dropped, %d dial errors, %d CancelRequests; errors seen:%s",
		elapsed.Round(10*time.Millisecond), p.calls.Load(), p.failures.Load(), len(hung),
		time.Duration(p.maxOver.Load()).Round(time.Millisecond), len(starved), starvedLag.Round(time.Millisecond),
		lag.max().Round(time.Millisecond), p.createdByCall.Load(), p.createRepeated.Load(),
		stats.Accepted, stats.Cuts, stats.MidCommitCuts, stats.Swallowed, stats.Dropped, stats.DialErrors, stats.CancelRequests,
		p.errorSummary())

	if verifyErr != nil {
		t.Errorf("cannot read the outcome from the database: %v", verifyErr)
	}
	if faultErr != nil {
		t.Errorf("the fault was not injected as planned: %v", faultErr)
	}
	if !finished {
		t.Errorf("jobs still unfinished %v after the start", runTimeout)
	}
	if v.lost > 0 {
		t.Errorf("%d jobs lost: neither completed nor failed", v.lost)
	}
	if v.doubled > 0 {
		t.Errorf("%d jobs run twice (completed by two workers)", v.doubled)
	}
	if v.dupWrites > 0 {
		t.Errorf("%d duplicate writes (a batch or a domain's job written twice)", v.dupWrites)
	}
	for _, pr := range v.problems {
		t.Errorf("database: %s", pr)
	}
	if len(hung) > 0 {
		t.Errorf("%d calls hung past their deadline (+%v grace, more than the process's scheduling lag explains)", len(hung), hangGrace)
		p.mu.Lock()
		var stacks string
		for _, o := range hung {
			if stacks = p.hangStacks[o.id]; stacks != "" {
				break
			}
		}
		p.mu.Unlock()
		if stacks != "" {
			name := filepath.Join(hangDir(), fmt.Sprintf("hang-%s-%s.txt", sc.name, d))
			if err := os.WriteFile(name, []byte(stacks), 0o644); err == nil {
				t.Logf("goroutines while a hung call waited: %s", name)
			}
		}
		for i, o := range hung {
			if i == 8 {
				break
			}
			t.Errorf("workload: %s", o)
		}
	}
	p.mu.Lock()
	for _, pr := range p.problems {
		t.Errorf("workload: %s", pr)
	}
	p.mu.Unlock()
	if recoveryErr != nil {
		t.Errorf("recovery: %v", recoveryErr)
	}
	if finalErr != nil {
		t.Errorf("the handle is not usable after the run without reopening it: %v", finalErr)
	}
	if stats.CancelRequests > 0 {
		t.Errorf("%d CancelRequests reached the pooler (PgBouncer 1.18 can crash on them)", stats.CancelRequests)
	}
	if err := st.check(); err != nil {
		t.Errorf("the pooler did not survive: %v", err)
		if err := st.rearm(); err != nil {
			t.Fatalf("cannot bring the pooler back for the next scenarios: %v", err)
		}
	}
}

// hangDir is where the goroutine dumps of hung calls go:
// POOLSAFE_FAULTS_HANG_DIR, else the system's temporary directory.
func hangDir() string {
	if d := os.Getenv("POOLSAFE_FAULTS_HANG_DIR"); d != "" {
		return d
	}
	return os.TempDir()
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// waitFinished polls the database (over the direct URL) until the producer
// is done and every job of the tenant is final; false after runTimeout.
func waitFinished(direct *sql.DB, p *pipeline, start time.Time) bool {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		if time.Since(start) > runTimeout {
			return false
		}
		select {
		case <-p.produced:
		default:
			continue
		}
		var open, total int
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := direct.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed', 'cancelled')), count(*)
			FROM `+schema+`.jobs WHERE tenant_id = $1`, p.tenant).Scan(&open, &total)
		cancel()
		if err == nil && open == 0 && total > 0 {
			return true
		}
	}
	return false
}

// probe measures how long the handle takes to answer once the fault is
// over: SELECT 1 every 20 ms until it succeeds.
func probe(p *pipeline) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		var one int
		err := p.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), errors.New("the handle did not answer within 30 s after the fault")
}

// guardPooler notices PgBouncer dying outside a scenario's own stack fault
// (a cancel request can crash 1.18) and starts it again, so one crash does
// not stall the rest of the run. The crash is still reported: check fails
// after the run.
func guardPooler(st *stack, p *pipeline) {
	down := 0
	for p.sleep(500 * time.Millisecond) {
		if p.faultLive.Load() {
			down = 0
			continue
		}
		c, err := net.DialTimeout("tcp", st.bouncerAddr(), 300*time.Millisecond)
		if err == nil {
			c.Close()
			down = 0
			continue
		}
		if down++; down < 4 {
			continue
		}
		p.problem("PgBouncer stopped accepting connections during the run (%v); restarted it with start-bouncer", err)
		if _, err := st.run(2*time.Minute, "start-bouncer"); err != nil {
			p.problem("start-bouncer: %s", strings.TrimSpace(err.Error()))
		}
		down = 0
	}
}
