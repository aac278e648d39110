// Command worker is a long-running job worker on the repo.Jobs queue, in
// the shape it takes behind a transaction pooler:
//
//   - each of -workers goroutines claims one job at a time with a lease
//     (Jobs.Claim) and polls when the queue is empty:
//     LISTEN/NOTIFY cannot work through a transaction pooler;
//   - while a job runs, a heartbeat extends its lease (Jobs.Heartbeat); when
//     the lease is lost, the job is someone else's and its result is dropped;
//   - a rescuer requeues the jobs of workers that died (Jobs.RescueExpired);
//   - on SIGINT or SIGTERM claiming stops; jobs in flight get -grace to
//     finish, then they are failed, which queues them again. A second signal
//     exits at once: those jobs are rescued when their lease expires.
//
// With DATABASE_URL (and DIRECT_URL behind a pooler) as for driverconf.FromEnv:
//
//	go run ./examples/worker -seed 200 -exit-when-idle   # a batch of 200 domains; exit when it has finished
//	go run ./examples/worker -seed 500 -work 2s          # Ctrl-C to stop gracefully
//
// Without -seed it works on every tenant's queued jobs until stopped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

var (
	workers      = flag.Int("workers", 4, "goroutines claiming jobs; each may use two connections (DB_MAX_OPEN_CONNS, default 10)")
	lease        = flag.Duration("lease", 30*time.Second, "lease per claimed job; heartbeat every lease/3, rescuer every lease/2")
	grace        = flag.Duration("grace", 10*time.Second, "how long jobs in flight may finish after SIGINT or SIGTERM")
	work         = flag.Duration("work", 15*time.Millisecond, "simulated time per job")
	seed         = flag.Int("seed", 0, "first submit a batch of `N` domains in a fresh tenant, and claim only its jobs")
	exitWhenIdle = flag.Bool("exit-when-idle", false, "with -seed: exit once the batch has finished")
	verbose      = flag.Bool("v", false, "log every job that succeeds too")
)

var errIdle = errors.New("the seeded batch has finished")

func main() {
	flag.Parse()
	if *workers < 1 || *lease < 100*time.Millisecond || (*exitWhenIdle && *seed == 0) {
		fmt.Fprintln(os.Stderr, "worker: need -workers ≥ 1, -lease ≥ 100ms, and -seed with -exit-when-idle")
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // after the first signal, a second one kills the process
	if err := run(ctx); err != nil {
		slog.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := driverconf.FromEnv()
	if err != nil {
		return err
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	defer db.Close() // deferred first, so it runs once every goroutine has stopped
	// Here so that the example runs on an empty database; in production,
	// migrations are a deploy step, not something every worker does.
	if err := repo.Migrate(ctx, cfg); err != nil {
		return err
	}
	repos := repo.New(db)

	// Claiming stops on a signal, once idle, or on an error (claimCtx); the
	// work in flight is abandoned when the grace period after that ends (workCtx).
	claimCtx, stopClaims := context.WithCancelCause(ctx)
	defer stopClaims(nil)
	workCtx, abortWork := context.WithCancel(context.WithoutCancel(ctx))
	defer abortWork()
	context.AfterFunc(claimCtx, func() { time.AfterFunc(*grace, abortWork) })

	w := &worker{jobs: repos.Jobs, stop: stopClaims}
	var batch repo.Batch
	if *seed > 0 {
		tenant := uuid.New()
		w.tenant = &tenant
		domains := make([]string, *seed)
		for i := range domains {
			domains[i] = fmt.Sprintf("shop-%05d.example.com", i)
		}
		if batch, err = repos.Batches.Create(ctx, *w.tenant, domains, repo.BatchOptions{Kind: "scrape"}); err != nil {
			return err
		}
		slog.Info("seeded a batch", "batch", batch.ID, "tenant", batch.TenantID, "jobs", batch.Total)
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.rescue(claimCtx) })
	host, _ := os.Hostname()
	for i := range *workers {
		wg.Go(func() { w.loop(claimCtx, workCtx, fmt.Sprintf("%s-%d-%d", host, os.Getpid(), i)) })
	}
	for *exitWhenIdle && sleep(claimCtx, 250*time.Millisecond) {
		if b, err := repos.Batches.Get(claimCtx, batch.TenantID, batch.ID); err == nil && b.Finished() {
			slog.Info("batch finished", "status", b.Status, "succeeded", b.Succeeded, "failed", b.Failed)
			stopClaims(errIdle)
		}
	}
	<-claimCtx.Done()
	slog.Info("stopping: no more claims, jobs in flight may finish", "reason", context.Cause(claimCtx), "grace", *grace)
	wg.Wait()
	if err := context.Cause(claimCtx); !errors.Is(err, context.Canceled) && !errors.Is(err, errIdle) {
		return err
	}
	return nil
}

type worker struct {
	jobs   *repo.Jobs
	tenant *uuid.UUID              // claim filter; nil claims every tenant's jobs
	stop   context.CancelCauseFunc // stops claiming; its cause is run's result
}

// loop claims and runs one job at a time until claiming stops. The claim
// runs on workCtx: a signal arriving mid-statement must not lose its jobs.
func (w *worker) loop(claimCtx, workCtx context.Context, name string) {
	for claimCtx.Err() == nil {
		jobs, err := w.jobs.Claim(workCtx, w.tenant, name, 1, *lease)
		if err != nil && claimCtx.Err() == nil {
			if !errors.Is(err, sqladapter.ErrConnection) && !errors.Is(err, sqladapter.ErrTimeout) {
				w.stop(err) // not a passing outage (a lost connection, a pooler restart, a timeout)
				return
			}
			slog.Warn("claim failed, retrying", "err", err)
		}
		if len(jobs) == 0 { // an empty queue or a passing outage
			sleep(claimCtx, 200*time.Millisecond)
			continue
		}
		w.process(workCtx, name, jobs[0])
	}
}

// process runs one claimed job to its end: completed, failed (and queued
// again while it has attempts left), or dropped because its lease was lost.
func (w *worker) process(workCtx context.Context, name string, job repo.Job) {
	log := slog.With("job", job.ID, "worker", name, "attempt", job.Attempts)
	jobCtx, abort := context.WithCancelCause(workCtx) // the heartbeat aborts it with ErrLeaseLost
	defer abort(nil)
	hbCtx, stopHeartbeat := context.WithCancel(jobCtx)
	go w.heartbeat(hbCtx, abort, name, job.ID)
	result, workErr := scrape(jobCtx, job)
	stopHeartbeat()

	// Complete and Fail get a context of their own: after the grace period,
	// Fail is exactly what must still reach the database.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var t repo.Transition
	var err error
	switch {
	case errors.Is(context.Cause(jobCtx), repo.ErrLeaseLost):
		err = repo.ErrLeaseLost
	case workErr == nil:
		t, err = w.jobs.Complete(ctx, job.ID, name, result)
	case jobCtx.Err() != nil: // the grace period ran out
		workErr = errors.New("worker shutting down")
		fallthrough
	default:
		t, err = w.jobs.Fail(ctx, job.ID, name, workErr.Error())
	}
	switch {
	case errors.Is(err, repo.ErrLeaseLost):
		log.Warn("lease lost (the job was rescued or cancelled): dropping it")
	case err != nil:
		log.Error("finishing the job failed; it is rescued when its lease expires", "err", err)
	case workErr != nil: // failed for good, or queued again to retry at run_at
		log.Info("job "+string(t.Job.State), "err", workErr, "run_at", t.Job.RunAt)
	default:
		log.Debug("job succeeded", "batch_finished", t.BatchFinished)
	}
}

// heartbeat extends the job's lease every lease/3 until ctx ends, and aborts
// the job when the lease is lost. A failed beat waits for the next one: the
// lease outlasts two.
func (w *worker) heartbeat(ctx context.Context, abort context.CancelCauseFunc, name string, id uuid.UUID) {
	for sleep(ctx, *lease/3) {
		if _, err := w.jobs.Heartbeat(ctx, id, name, *lease); errors.Is(err, repo.ErrLeaseLost) {
			abort(err)
			return
		} else if err != nil && ctx.Err() == nil {
			slog.Warn("heartbeat failed", "job", id, "err", err)
		}
	}
}

// rescue requeues the jobs of vanished workers every lease/2. Any number of
// processes may run it at once: they skip each other's rows.
func (w *worker) rescue(ctx context.Context) {
	for sleep(ctx, *lease/2) {
		if res, err := w.jobs.RescueExpired(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("rescue failed", "err", err)
		} else if len(res.Requeued)+len(res.Failed) > 0 {
			slog.Warn("rescued jobs whose lease had expired", "requeued", len(res.Requeued), "failed", len(res.Failed))
		}
	}
}

// scrape stands in for the real work on job.Payload: it takes -work, and
// the first attempt at about one job in eight fails.
func scrape(ctx context.Context, job repo.Job) (json.RawMessage, error) {
	if !sleep(ctx, *work) {
		return nil, context.Cause(ctx)
	}
	if job.ID[0]%8 == 0 && job.Attempts == 1 {
		return nil, errors.New("connection reset by peer (simulated)")
	}
	return json.RawMessage(`{"http_status": 200}`), nil
}

// sleep waits d and reports whether ctx is still going.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}
