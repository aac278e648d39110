// Command worker is a long-running job worker for the scraping back office,
// built on the repo.Jobs queue. It shows the parts a production worker
// needs around Claim and Complete:
//
//   - N goroutines each claim one job at a time with a lease
//     (Jobs.Claim), polling with a jittered backoff when the queue is
//     empty — no LISTEN/NOTIFY, which a transaction pooler cannot deliver;
//   - while a job runs, a heartbeat extends its lease every lease/3
//     (Jobs.Heartbeat); when the lease is lost — the job was rescued or
//     cancelled — the work stops and the result is dropped, because the job
//     is someone else's now;
//   - the "scrape" is simulated: it derives a result from the domain in the
//     payload, sleeps a little, reports progress (Jobs.SetProgress), and
//     ends with Jobs.Complete — or Jobs.Fail for a fixed subset of domains,
//     some of which fail once and succeed on retry, some on every attempt,
//     so retries with backoff and a batch that finishes with errors can be
//     seen. "batch … finished: …" is logged exactly when Complete or Fail
//     reports that it finished the batch (Transition.BatchFinished);
//   - a lease rescuer (Jobs.RescueExpired every lease/2) requeues the jobs
//     of workers that vanished without finishing them;
//   - graceful shutdown on SIGINT or SIGTERM: claiming stops at once,
//     in-flight jobs get -grace to finish; when it expires their work is
//     cancelled and they are failed with "worker shutting down", so they are
//     queued again (after the usual retry backoff). That consumes an attempt
//     — a job on its last attempt fails for good. A worker that crashes
//     instead (kill -9, a lost host) loses nothing either: its jobs stay
//     running until their lease expires, then a rescuer anywhere requeues
//     them (also counting the lost attempt). A second Ctrl-C exits at once.
//     The database handle is closed last.
//
// It reads the configuration like every example (driverconf.FromEnv):
//
//	DATABASE_URL  the URL the application uses (required); may be a
//	              transaction pooler such as PgBouncer or Supabase's port 6543
//	DIRECT_URL    a direct or session-mode URL to the same database, needed
//	              for migrations when DATABASE_URL is a transaction pooler
//	DB_DRIVER     pgx (default) or pq
//	DB_POOL_MODE  direct, session or transaction (inferred from the URL
//	              when unset)
//
// DB_MAX_OPEN_CONNS defaults to 2×workers+2 here, so that heartbeats do not
// queue behind claims for a connection. Transient database errors (a lost
// connection, a pooler restart, a timeout) are retried with backoff for up
// to 30s. The schema is migrated at start (repo.Migrate) so the example
// runs on an empty database; in production, run migrations as a separate
// deploy step, not from every worker.
//
// Flags:
//
//	-workers N        goroutines claiming jobs (default 4)
//	-lease D          lease per claim (default 30s); heartbeat every D/3,
//	                  rescuer every D/2
//	-grace D          how long in-flight jobs may finish after SIGINT/SIGTERM
//	                  (default 10s)
//	-tenant UUID      claim only this tenant's jobs (default: every tenant)
//	-worker-id NAME   this process's name in locked_by (default
//	                  hostname-pid); goroutine i is NAME-i
//	-seed N           first submit a demo batch of N domains (in -tenant, or
//	                  in a fresh random tenant that is then the claim filter)
//	-exit-when-idle   exit 0 once nothing is left to do: the seeded batch is
//	                  finished, or (without -seed) the -tenant has no queued
//	                  or running job
//	-work D           simulated time per scrape (default 15ms)
//	-v                log every job, heartbeat and claim
//
// Against the repository's local stack (make stack-up), through the
// transaction pooler:
//
//	eval "$(bash scripts/pgstack.sh env)"
//	export DATABASE_URL="$POOLSAFE_TEST_TX_URL" DIRECT_URL="$POOLSAFE_TEST_DIRECT_URL" DB_POOL_MODE=transaction
//	go run ./examples/worker -seed 200 -exit-when-idle             # runs to completion, as CI does
//	go run ./examples/worker -seed 500                             # Ctrl-C to stop it gracefully
//	go run ./examples/worker -seed 20 -work 5s -grace 1s -lease 2s # Ctrl-C: jobs released after 1s
//
// With -seed, each run works in a fresh random tenant (logged at start), so
// runs never take each other's jobs; the batch, its jobs and their results
// stay in the database to be looked at. Without -seed and -tenant the worker
// claims queued jobs of every tenant.
//
// Ctrl-C in a terminal reaches the program under go run. From a script,
// build it first (go build -o worker ./examples/worker) and signal the
// binary: go run does not pass on a signal sent to it with kill.
//
// Output is log/slog text on stderr. The exit status is 0 after a signal or
// -exit-when-idle, 1 after an unexpected error (a database error other than
// a lost lease or a transient one, or a database unreachable for 30s), 2 for
// bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// Tunables that are not flags.
const (
	pollMin = 25 * time.Millisecond // first backoff after an empty claim
	pollMax = time.Second           // backoff cap: an idle worker polls about once a second
	// maxOutage is how long a loop keeps retrying transient database
	// errors (a lost connection, a timeout: a pooler restart, a failover)
	// before it gives up and the worker exits 1.
	maxOutage = 30 * time.Second
	// callTimeout bounds each database call of the loops; a call that
	// times out counts as a transient error.
	callTimeout = 15 * time.Second
	// idleCheck is how often the seeded batch, or with -exit-when-idle the
	// tenant's queue, is looked at.
	idleCheck = 250 * time.Millisecond
	// progressEvery is how often the seeded batch's progress is logged.
	progressEvery = 2 * time.Second
)

type options struct {
	workers      int
	lease, grace time.Duration
	work         time.Duration
	tenant       *uuid.UUID
	workerID     string
	seed         int
	exitWhenIdle bool
	verbose      bool
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		flag.Usage()
		os.Exit(2)
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling: a second
	// Ctrl-C kills the process at once (its jobs are then rescued when
	// their leases expire).
	context.AfterFunc(ctx, stop)

	if err := run(ctx, log, o); err != nil {
		log.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var o options
	var tenant string
	flag.IntVar(&o.workers, "workers", 4, "goroutines claiming jobs")
	flag.DurationVar(&o.lease, "lease", 30*time.Second, "lease per claimed job; heartbeat every lease/3, rescuer every lease/2")
	flag.DurationVar(&o.grace, "grace", 10*time.Second, "how long in-flight jobs may finish after SIGINT/SIGTERM before they are failed and requeued")
	flag.StringVar(&tenant, "tenant", "", "claim only this tenant's jobs (a UUID; default: every tenant)")
	flag.StringVar(&o.workerID, "worker-id", fmt.Sprintf("%s-%d", host, os.Getpid()), "this process's worker name; goroutine i claims as NAME-i")
	flag.IntVar(&o.seed, "seed", 0, "submit a demo batch of `N` domains first (in -tenant, or in a fresh tenant)")
	flag.BoolVar(&o.exitWhenIdle, "exit-when-idle", false, "exit 0 once the seeded batch is finished (or, without -seed, -tenant has no queued or running job)")
	flag.DurationVar(&o.work, "work", 15*time.Millisecond, "simulated time per scrape")
	flag.BoolVar(&o.verbose, "v", false, "log every job, heartbeat and claim")
	flag.Parse()

	switch {
	case flag.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	case o.workers < 1 || o.workers > 1000:
		return o, fmt.Errorf("-workers must be between 1 and 1000, got %d", o.workers)
	case o.lease < 100*time.Millisecond:
		return o, fmt.Errorf("-lease must be at least 100ms, got %v", o.lease)
	case o.grace < 0:
		return o, fmt.Errorf("-grace must not be negative, got %v", o.grace)
	case o.work < 0:
		return o, fmt.Errorf("-work must not be negative, got %v", o.work)
	case o.seed < 0 || o.seed > repo.MaxBatchDomains:
		return o, fmt.Errorf("-seed must be between 0 and %d, got %d", repo.MaxBatchDomains, o.seed)
	case o.workerID == "" || len(o.workerID)+5 > repo.MaxWorkerLen:
		return o, fmt.Errorf("-worker-id must be 1 to %d bytes", repo.MaxWorkerLen-5)
	case o.exitWhenIdle && o.seed == 0 && tenant == "":
		return o, errors.New("-exit-when-idle needs -seed or -tenant: it watches the seeded batch or the tenant's queue")
	}
	if tenant != "" {
		t, err := uuid.Parse(tenant)
		if err != nil || t == uuid.Nil {
			return o, fmt.Errorf("-tenant %q is not a tenant UUID", tenant)
		}
		o.tenant = &t
	}
	return o, nil
}

func run(ctx context.Context, log *slog.Logger, o options) error {
	cfg, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	if cfg.MaxOpenConns == 0 {
		// Each busy goroutine may need two connections at once (its
		// scrape's progress update and its heartbeat), plus the rescuer
		// and the idle check.
		cfg.MaxOpenConns = 2*o.workers + 2
	}
	log.Info("starting", "config", cfg.WithDefaults(), "workers", o.workers, "worker_id", o.workerID,
		"lease", o.lease, "grace", o.grace)
	for _, n := range cfg.Notes() {
		log.Info("config note", "note", n)
	}

	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after every goroutine below has
	// stopped and the summary is written.
	defer func() {
		if err := db.Close(); err != nil {
			log.Warn("close database", "err", err)
		}
		log.Info("database closed")
	}()

	// Migrations need a session, so behind a transaction pooler they run
	// over cfg.DirectURL. Done here so the example works on an empty
	// database; in production run them once per deploy, not per worker.
	if err := repo.Migrate(ctx, cfg); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	w := &worker{log: log, repos: repo.New(db), o: o, tenant: o.tenant}
	if o.seed > 0 {
		if w.tenant == nil {
			// A fresh tenant, which also becomes the claim filter: this
			// run then works only on its own jobs, even in a shared
			// database.
			t := uuid.New()
			w.tenant = &t
		}
		if err := w.seed(ctx); err != nil {
			return err
		}
	}
	return w.run(ctx)
}

// worker is the state the goroutines share.
type worker struct {
	log    *slog.Logger
	repos  *repo.Repos
	o      options
	tenant *uuid.UUID  // claim filter; nil claims from every tenant
	batch  *repo.Batch // the seeded batch, if any

	// stopCtx is done when claiming must stop: a signal, -exit-when-idle,
	// or a fatal error (its cause says which).
	stopCtx context.Context
	stop    context.CancelCauseFunc
	// workCtx is done when in-flight work must be abandoned: the grace
	// period ran out.
	workCtx context.Context

	errMu sync.Mutex
	err   error // the first fatal error

	claimed, succeeded, retried, failed, leaseLost, released atomic.Int64
	rescuedQueued, rescuedFailed                             atomic.Int64
	inFlight                                                 atomic.Int64
}

// errIdle is the stop cause of -exit-when-idle.
var errIdle = errors.New("nothing left to do (-exit-when-idle)")

// seed submits the demo batch: one job per domain, in one statement.
func (w *worker) seed(ctx context.Context) error {
	domains := make([]string, w.o.seed)
	for i := range domains {
		domains[i] = fmt.Sprintf("shop-%05d.example.com", i+1)
	}
	b, err := w.repos.Batches.Create(ctx, *w.tenant, domains, repo.BatchOptions{
		Name: fmt.Sprintf("worker example, %d domains", len(domains)),
		Kind: "scrape",
	})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	w.batch = &b
	w.log.Info("seeded a batch", "batch", b.ID, "tenant", b.TenantID, "jobs", b.Total)
	return nil
}

// fail records a fatal error and stops the worker gracefully; run then
// returns the first such error.
func (w *worker) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
	w.stop(err)
}

func (w *worker) run(sigCtx context.Context) error {
	w.stopCtx, w.stop = context.WithCancelCause(sigCtx)
	defer w.stop(nil)
	// Not derived from sigCtx: a signal must not cut short the work in
	// progress, only the end of the grace period does.
	workCtx, abortWork := context.WithCancel(context.Background())
	w.workCtx = workCtx
	defer abortWork()
	// The rescuer and the idle check run until the workers are done.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()

	var background, workers sync.WaitGroup
	background.Go(func() { w.rescuer(bgCtx) })
	if w.o.exitWhenIdle || w.batch != nil {
		background.Go(func() { w.watch(w.stopCtx) })
	}
	for i := range w.o.workers {
		workers.Go(func() { w.loop(fmt.Sprintf("%s-%d", w.o.workerID, i)) })
	}
	start := time.Now()
	filter := "every tenant"
	if w.tenant != nil {
		filter = w.tenant.String()
	}
	w.log.Info("working", "tenant", filter)

	<-w.stopCtx.Done()
	w.log.Info("stopping: no more claims, waiting for jobs in flight",
		"reason", context.Cause(w.stopCtx), "in_flight", w.inFlight.Load(), "grace", w.o.grace)
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	grace := time.NewTimer(w.o.grace)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
		w.log.Warn("grace period over: cancelling the jobs in flight, they are failed and requeued")
		abortWork()
		<-drained
	}
	stopBackground()
	background.Wait()

	w.summary(time.Since(start))
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// loop is one claiming goroutine: claim a job, run it, repeat, until
// claiming stops.
//
// It polls: there is no LISTEN/NOTIFY wake-up. Behind a transaction
// pooler a LISTEN lands on whichever server connection serves that one
// statement; the pooler hands the connection to other clients afterwards,
// and the notifications never reach this process. Polling with a backoff
// capped at about a second costs one indexed query per idle goroutine per
// second and works through any pooler. (A LISTEN over DIRECT_URL could
// serve as a wake-up hint, but the poll must stay as the source of truth.)
func (w *worker) loop(name string) {
	log := w.log.With("worker", name)
	empty := 0
	var down outage
	for w.stopCtx.Err() == nil {
		// The claim itself runs on workCtx, not stopCtx: a signal arriving
		// mid-statement must not leave jobs claimed whose rows we never
		// received. Jobs claimed in that instant are run like any other.
		ctx, cancel := context.WithTimeout(w.workCtx, callTimeout)
		jobs, err := w.repos.Jobs.Claim(ctx, w.tenant, name, 1, w.o.lease)
		cancel()
		switch {
		case err != nil && down.tolerate(err):
			log.Warn("claim failed, retrying", "err", err, "failures", down.n)
			w.sleep(backoff(down.n))
			continue
		case err != nil:
			w.fail(fmt.Errorf("claim: %w", err))
			return
		}
		down.reset()
		if len(jobs) == 0 {
			empty++
			w.sleep(backoff(empty))
			continue
		}
		empty = 0
		w.claimed.Add(1)
		w.inFlight.Add(1)
		w.process(log, name, jobs[0])
		w.inFlight.Add(-1)
	}
}

// backoff is the jittered pause after n consecutive empty or failed polls:
// pollMin doubling up to pollMax, each a random 50–100% of that, so idle
// goroutines do not poll in step.
func backoff(n int) time.Duration {
	d := pollMax
	if n < 16 {
		d = min(pollMin<<(n-1), pollMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d, or until claiming stops.
func (w *worker) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.stopCtx.Done():
	}
}

// process runs one claimed job to its end: completed, failed (and maybe
// retried), or dropped because its lease was lost.
func (w *worker) process(log *slog.Logger, name string, job repo.Job) {
	log = log.With("job", job.ID, "attempt", fmt.Sprintf("%d/%d", job.Attempts, job.MaxAttempts))
	log.Debug("claimed", "payload", string(job.Payload))

	// jobCtx ends when the grace period runs out (workCtx) or when the
	// heartbeat finds the lease lost (its cause is then ErrLeaseLost).
	jobCtx, abort := context.WithCancelCause(w.workCtx)
	defer abort(nil)
	hbCtx, stopHeartbeat := context.WithCancel(jobCtx)
	var hb sync.WaitGroup
	hb.Go(func() { w.heartbeat(hbCtx, log, name, job.ID, abort) })
	result, err := scrape(jobCtx, w.repos.Jobs, name, job, w.o.work)
	stopHeartbeat()
	hb.Wait()

	var t repo.Transition
	var msg string
	switch {
	case err == nil:
		t, err = w.finish(log, func(ctx context.Context) (repo.Transition, error) {
			return w.repos.Jobs.Complete(ctx, job.ID, name, result)
		})
		if err == nil {
			w.succeeded.Add(1)
			log.Debug("completed", "result", string(result))
		}
	case errors.Is(err, repo.ErrLeaseLost) || errors.Is(context.Cause(jobCtx), repo.ErrLeaseLost):
		// Rescued or cancelled under us: the job is not ours to finish.
		w.leaseLost.Add(1)
		log.Warn("lease lost, dropping the job", "err", err)
		return
	case jobCtx.Err() != nil:
		// The grace period ran out. Fail counts the attempt and queues the
		// job again after the retry backoff (or fails it for good when this
		// was its last attempt).
		msg = "worker shutting down"
		t, err = w.finish(log, func(ctx context.Context) (repo.Transition, error) {
			return w.repos.Jobs.Fail(ctx, job.ID, name, msg)
		})
		if err == nil {
			w.released.Add(1)
			log.Warn("released on shutdown", "state", t.Job.State, "run_at", t.Job.RunAt.Format(time.RFC3339Nano))
		}
	default:
		msg = err.Error()
		t, err = w.finish(log, func(ctx context.Context) (repo.Transition, error) {
			return w.repos.Jobs.Fail(ctx, job.ID, name, msg)
		})
		switch {
		case err != nil:
		case t.Job.State == repo.JobStateQueued:
			w.retried.Add(1)
			log.Info("job failed, will retry", "error", msg, "retry_in", time.Until(t.Job.RunAt).Round(time.Millisecond))
		default:
			w.failed.Add(1)
			log.Warn("job failed for good", "error", msg, "state", t.Job.State)
		}
	}
	switch {
	case errors.Is(err, repo.ErrLeaseLost):
		w.leaseLost.Add(1)
		log.Warn("lease lost before the job was finished, dropping it", "err", err)
		return
	case err != nil:
		w.fail(fmt.Errorf("finish job %s: %w", job.ID, err))
		return
	}
	if t.BatchFinished && t.Batch != nil {
		b := t.Batch
		w.log.Info(fmt.Sprintf("batch %s finished: %s", b.ID, b.Status),
			"total", b.Total, "succeeded", b.Succeeded, "failed", b.Failed, "cancelled", b.Cancelled)
	}
}

// finish runs Complete or Fail, retrying transient errors for up to
// maxOutage. Each try gets a context of its own, not workCtx: after the
// grace period, Fail is exactly what must still reach the database. A
// retry is safe: if a failed try was applied after all, the retry finds
// the job no longer running under this worker and reports ErrLeaseLost.
// The retries ignore -grace: during an outage a shutdown can take up to
// maxOutage longer, so that a finished job is not redone needlessly.
func (w *worker) finish(log *slog.Logger, call func(context.Context) (repo.Transition, error)) (repo.Transition, error) {
	var down outage
	for {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		t, err := call(ctx)
		cancel()
		if err == nil || !down.tolerate(err) {
			return t, err
		}
		log.Warn("finishing the job failed, retrying", "err", err, "failures", down.n)
		time.Sleep(backoff(down.n))
	}
}

// heartbeat extends the job's lease every lease/3 until ctx ends. When the
// lease is lost it aborts the job's work with that error. Other errors are
// logged and retried on the next tick: the lease outlasts two missed beats.
func (w *worker) heartbeat(ctx context.Context, log *slog.Logger, name string, id uuid.UUID, abort context.CancelCauseFunc) {
	t := time.NewTicker(w.o.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		until, err := w.repos.Jobs.Heartbeat(ctx, id, name, w.o.lease)
		switch {
		case err == nil:
			log.Debug("heartbeat", "lease_until", until.Format(time.RFC3339Nano))
		case errors.Is(err, repo.ErrLeaseLost):
			abort(err)
			return
		case ctx.Err() != nil:
			return
		default:
			log.Warn("heartbeat failed, will retry", "err", err)
		}
	}
}

// scrape simulates scraping the domain in the job's payload: a few steps
// of "network" time with progress reported in between, and a result
// derived from the domain alone. Domains whose hash is a multiple of 25
// fail on every attempt (the job ends failed), other multiples of 8 fail
// on their first attempt only (the retry succeeds).
func scrape(ctx context.Context, jobs *repo.Jobs, worker string, job repo.Job, work time.Duration) (json.RawMessage, error) {
	var p struct {
		Domain string `json:"domain"`
	}
	if err := json.Unmarshal(job.Payload, &p); err != nil || p.Domain == "" {
		return nil, fmt.Errorf("payload has no domain: %s", job.Payload)
	}
	h := fnv.New64a()
	h.Write([]byte(p.Domain))
	sum := h.Sum64()

	const steps = 3
	for step := 1; step <= steps; step++ {
		// Each step takes work/steps, ±50% depending on the domain.
		d := work / steps
		d = d/2 + time.Duration(sum>>(8*step)%1000)*d/1000
		if err := sleepCtx(ctx, d); err != nil {
			return nil, err
		}
		if step == 1 {
			switch {
			case sum%25 == 0:
				return nil, fmt.Errorf("fetch https://%s/: lookup %s: no such host (simulated)", p.Domain, p.Domain)
			case sum%8 == 0 && job.Attempts == 1:
				return nil, fmt.Errorf("fetch https://%s/: read: connection reset by peer (simulated, first attempt only)", p.Domain)
			}
		}
		if step < steps {
			err := jobs.SetProgress(ctx, job.ID, worker, float64(step)/steps)
			switch {
			case errors.Is(err, repo.ErrLeaseLost), err != nil && ctx.Err() != nil:
				return nil, err
			case err != nil:
				// Progress is advisory: a failed update does not fail the job.
				slog.Warn("set progress", "job", job.ID, "err", err)
			}
		}
	}
	return json.Marshal(map[string]any{
		"domain":      p.Domain,
		"url":         "https://" + p.Domain + "/",
		"http_status": 200,
		"title":       strings.ToUpper(p.Domain[:1]) + strings.SplitN(p.Domain, ".", 2)[0][1:],
		"pages":       10 + sum%90,
		"fingerprint": fmt.Sprintf("%016x", sum),
		"attempt":     job.Attempts,
	})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// rescuer requeues the jobs of vanished workers every lease/2 until ctx
// ends. It covers every tenant: any worker process may run it, and
// concurrent rescuers skip each other's rows.
func (w *worker) rescuer(ctx context.Context) {
	t := time.NewTicker(w.o.lease / 2)
	defer t.Stop()
	var down outage
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := w.repos.Jobs.RescueExpired(cctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && down.tolerate(err):
			w.log.Warn("rescue failed, will retry", "err", err)
			continue
		case err != nil:
			w.fail(fmt.Errorf("rescue expired leases: %w", err))
			return
		}
		down.reset()
		w.rescuedQueued.Add(int64(len(res.Requeued)))
		w.rescuedFailed.Add(int64(len(res.Failed)))
		if n := len(res.Requeued) + len(res.Failed); n > 0 {
			w.log.Warn("rescued jobs whose lease expired",
				"requeued", len(res.Requeued), "failed", len(res.Failed),
				"requeued_ids", firstIDs(res.Requeued), "failed_ids", firstIDs(res.Failed))
		}
		for _, b := range res.FinishedBatches {
			w.log.Info(fmt.Sprintf("batch %s finished by the rescuer", b))
		}
	}
}

// watch logs the seeded batch's progress and, with -exit-when-idle, stops
// the worker once nothing is left to do.
func (w *worker) watch(ctx context.Context) {
	t := time.NewTicker(idleCheck)
	defer t.Stop()
	var lastLog time.Time
	var down outage
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle, b, err := w.idle(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil && down.tolerate(err):
			w.log.Warn("idle check failed, will retry", "err", err)
			continue
		case err != nil:
			w.fail(fmt.Errorf("idle check: %w", err))
			return
		}
		down.reset()
		if b != nil && !b.Finished() && time.Since(lastLog) >= progressEvery {
			lastLog = time.Now()
			w.log.Info("batch progress", "batch", b.ID, "status", b.Status,
				"done", fmt.Sprintf("%d/%d", b.Done(), b.Total), "succeeded", b.Succeeded, "failed", b.Failed)
		}
		if idle {
			if w.o.exitWhenIdle {
				w.stop(errIdle)
			}
			return
		}
	}
}

// idle reports whether there is nothing left to do: the seeded batch is
// finished, or (without one) the tenant has no queued or running job —
// queued includes jobs waiting for a retry.
func (w *worker) idle(ctx context.Context) (bool, *repo.Batch, error) {
	if w.batch != nil {
		b, err := w.repos.Batches.Get(ctx, *w.tenant, w.batch.ID)
		if err != nil {
			return false, nil, err
		}
		return b.Finished(), &b, nil
	}
	for _, s := range []repo.JobState{repo.JobStateQueued, repo.JobStateRunning} {
		page, err := w.repos.Jobs.List(ctx, *w.tenant, repo.JobFilter{State: s}, repo.Page{Limit: 1})
		if err != nil || len(page.Items) > 0 {
			return false, nil, err
		}
	}
	return true, nil, nil
}

// summary logs what this process did and where the seeded batch stands.
func (w *worker) summary(elapsed time.Duration) {
	w.log.Info("stopped",
		"elapsed", elapsed.Round(time.Millisecond),
		"claimed", w.claimed.Load(), "succeeded", w.succeeded.Load(),
		"retried", w.retried.Load(), "failed", w.failed.Load(),
		"lease_lost", w.leaseLost.Load(), "released_on_shutdown", w.released.Load(),
		"rescued_requeued", w.rescuedQueued.Load(), "rescued_failed", w.rescuedFailed.Load())
	if w.batch == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	b, err := w.repos.Batches.Get(ctx, *w.tenant, w.batch.ID)
	if err != nil {
		w.log.Warn("read the seeded batch", "err", err)
		return
	}
	attrs := []any{"batch", b.ID, "status", b.Status, "total", b.Total,
		"succeeded", b.Succeeded, "failed", b.Failed, "cancelled", b.Cancelled}
	if !b.Finished() {
		attrs = append(attrs, "left", b.Total-b.Done(),
			"resume", fmt.Sprintf("go run ./examples/worker -tenant %s -exit-when-idle", b.TenantID))
	}
	w.log.Info("seeded batch", attrs...)
}

// outage tracks the consecutive failures of one loop.
type outage struct {
	since time.Time // when the first of them happened
	n     int
}

// tolerate counts err and reports whether to retry: err is transient — a
// lost or refused connection, a timeout, a serialization failure or a
// deadlock — and the failures began less than maxOutage ago.
func (o *outage) tolerate(err error) bool {
	transient := errors.Is(err, sqladapter.ErrConnection) || errors.Is(err, sqladapter.ErrTimeout) ||
		sqladapter.Retryable(err)
	if !transient {
		return false
	}
	if o.n == 0 {
		o.since = time.Now()
	}
	o.n++
	return time.Since(o.since) < maxOutage
}

func (o *outage) reset() { o.n = 0 }

// firstIDs keeps log lines short: at most ten ids.
func firstIDs(ids []uuid.UUID) []uuid.UUID {
	return ids[:min(len(ids), 10)]
}
