package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
)

// The minimal queue of the anchor script bench/queue_min.sql.
const minQueueDDL = `CREATE TABLE IF NOT EXISTS ` + schema + `.minq (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	state text NOT NULL DEFAULT 'queued',
	priority int NOT NULL DEFAULT 0,
	run_at timestamptz NOT NULL DEFAULT now(),
	payload jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS minq_runnable_idx ON ` + schema + `.minq (priority DESC, run_at, id) WHERE state = 'queued'`

// benchTenant owns every job the queue benchmarks enqueue.
var benchTenant = uuid.MustParse("11111111-1111-4111-8111-111111111111")

// batchSize is how many jobs each batch of the queue benchmarks holds.
const batchSize = 1000

// fillMin empties the minimal queue and enqueues n jobs.
func (e *env) fillMin(ctx context.Context, n int) error {
	return e.exec(ctx, `TRUNCATE `+schema+`.minq`,
		fmt.Sprintf(`INSERT INTO %s.minq (payload, run_at)
			SELECT jsonb_build_object('domain', 'shop-' || g || '.example.com'), now() - (%d - g / %d) * interval '1 second'
			FROM generate_series(1, %d) g`, schema, (n+batchSize-1)/batchSize, batchSize, n),
		`VACUUM ANALYZE `+schema+`.minq`)
}

// fillJobs empties the project's queue and enqueues n jobs in batches of
// batchSize, as Batches.Create writes them (without the domains); with
// loose, the same jobs without a batch.
func (e *env) fillJobs(ctx context.Context, n int, loose bool) error {
	batches := (n + batchSize - 1) / batchSize
	return e.exec(ctx, `TRUNCATE `+schema+`.jobs, `+schema+`.batches`,
		// Batches submitted one second apart, as Batches.Create writes them: the
		// jobs of a batch share its run_at, so claims take them batch by batch.
		fmt.Sprintf(`WITH b AS (
			INSERT INTO %[1]s.batches (tenant_id, name, total, created_at)
			SELECT '%[2]s', 'bench ' || g, %[3]d, now() - (%[4]d - g) * interval '1 second'
			FROM generate_series(1, %[4]d) g
			RETURNING id, tenant_id, created_at
		)
		INSERT INTO %[1]s.jobs (tenant_id, batch_id, kind, payload, run_at, created_at)
		SELECT b.tenant_id, CASE WHEN `+fmt.Sprint(!loose)+` THEN b.id END, 'scan', jsonb_build_object('domain', 'shop-' || g || '.example.com'), b.created_at, b.created_at
		FROM b, generate_series(1, %[3]d) g`, schema, benchTenant, batchSize, batches),
		`VACUUM ANALYZE `+schema+`.jobs, `+schema+`.batches`)
}

// queueRun is one measured run of a queue contender.
type queueRun struct {
	jobs    int64         // jobs completed in the measured time
	elapsed time.Duration // measured time
	stats   poolStats     // PgBouncer's counters over the run
	// statJobs are the jobs completed while stats counted: the measured
	// ones and those of the calls still running when the time ran out.
	statJobs int64
	cpu      cpuSample // CPU time over the run
	// parts is where the run's jobs_next calls spent their time, when the
	// server tracks statements (calls 0 otherwise).
	parts breakdown
}

// cpuPerJob returns the CPU time per job of the server, the pooler and the client, in µs.
func (r queueRun) cpuPerJob() (server, pooler, client float64) {
	if r.statJobs == 0 {
		return 0, 0, 0
	}
	n := float64(r.statJobs)
	return float64(r.cpu.server.Microseconds()) / n, float64(r.cpu.pooler.Microseconds()) / n, float64(r.cpu.client.Microseconds()) / n
}

// perJob returns PgBouncer's statements and transactions per job.
func (r queueRun) perJob() (stmts, xacts float64) {
	if r.statJobs == 0 {
		return 0, 0
	}
	return float64(r.stats.queries) / float64(r.statJobs), float64(r.stats.xacts) / float64(r.statJobs)
}

// waitShare is the share of the statements' time in the pool spent waiting
// for a server connection.
func (r queueRun) waitShare() float64 {
	if t := r.stats.waitTime + r.stats.queryTime; t > 0 {
		return float64(r.stats.waitTime) / float64(t)
	}
	return 0
}

func (r queueRun) rate() float64 { return float64(r.jobs) / r.elapsed.Seconds() }

// pgbenchQueue runs a pgbench queue script and counts the jobs it finished.
func (e *env) pgbenchQueue(ctx context.Context, script string, clients int, d time.Duration, doneQuery string, vars ...string) (queueRun, error) {
	before, err := e.poolStats(ctx)
	if err != nil {
		return queueRun{}, err
	}
	cpu0 := e.cpu.sample()
	res, err := e.runPgbench(ctx, script, clients, d, vars...)
	if err != nil {
		return queueRun{}, err
	}
	cpu := e.cpu.sample().sub(cpu0)
	cpu.client = res.cpu
	after, err := e.poolStats(ctx)
	if err != nil {
		return queueRun{}, err
	}
	done, err := e.count(ctx, doneQuery)
	if err != nil {
		return queueRun{}, err
	}
	// pgbench's tps leaves out its connection set-up: jobs/s is tps times
	// the jobs per transaction.
	secs := float64(res.xacts) / res.tps
	return queueRun{jobs: done, elapsed: time.Duration(secs * float64(time.Second)), stats: after.sub(before), statJobs: done, cpu: cpu}, nil
}

// loopConfig is the project's worker loop.
type loopConfig struct {
	workers int
	claim   int           // jobs per Claim
	lease   time.Duration // lease per Claim
	// failEvery: every failEvery-th job (by its domain) fails its first
	// attempt and is retried after Fail's backoff; 0 never.
	failEvery int
}

// workerLoop runs cfg.workers workers of the project's loop for d on drv
// through the transaction pool: each reports the outcomes of the jobs it
// ran and claims up to cfg.claim more with a lease, in one Jobs.Next call,
// "runs" them — the flaky ones fail their first attempt and come back after
// the retry backoff — and repeats. Batch accounting is on (every job
// belongs to a batch). It counts the jobs completed before d ran out
// (failed attempts do not count).
func (e *env) workerLoop(ctx context.Context, drv driverconf.Driver, cfg loopConfig, d time.Duration) (queueRun, error) {
	db, err := e.poolsafe(drv, cfg.workers)
	if err != nil {
		return queueRun{}, err
	}
	defer db.Close()
	// Open the connections first: pgbench's rate leaves its set-up out too.
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Go(func() { _ = db.PingContext(ctx) })
	}
	wg.Wait()
	jobs := repo.New(db, repo.WithSchema(schema)).Jobs
	before, err := e.poolStats(ctx)
	if err != nil {
		return queueRun{}, err
	}
	var (
		done     atomic.Int64
		all      atomic.Int64
		stop     atomic.Bool
		errMu    sync.Mutex
		firstErr error
	)
	result := json.RawMessage(`{"ok":1}`)
	cpu0, self0 := e.cpu.sample(), selfCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := range cfg.workers {
		wg.Go(func() {
			name := fmt.Sprintf("bench-%s-%d", drv, w)
			var outcomes []repo.Outcome
			for {
				n := cfg.claim
				if stop.Load() {
					n = 0 // report the last outcomes, claim nothing
				}
				res, err := jobs.Next(ctx, nil, name, outcomes, n, cfg.lease)
				if err == nil && len(res.Lost) > 0 {
					err = fmt.Errorf("%d outcomes lost their lease", len(res.Lost))
				}
				if err != nil {
					errMu.Lock()
					firstErr = errors.Join(firstErr, err)
					errMu.Unlock()
					stop.Store(true)
					return
				}
				var finished int64 // completed: failed attempts do not count
				for _, o := range outcomes {
					if o.Err == "" {
						finished++
					}
				}
				all.Add(finished)
				if time.Now().Before(deadline) {
					done.Add(finished)
				}
				if n == 0 {
					return
				}
				if len(res.Jobs) == 0 {
					outcomes = outcomes[:0]
					time.Sleep(5 * time.Millisecond)
					continue
				}
				// "Run" each job: the flaky ones fail their first attempt
				// and come back after the retry backoff.
				outcomes = outcomes[:0]
				for _, j := range res.Jobs {
					o := repo.Outcome{ID: j.ID, Result: result}
					if cfg.failEvery > 0 && j.Attempts == 1 && flaky(j.Payload, cfg.failEvery) {
						o.Err = "flaky"
					}
					outcomes = append(outcomes, o)
				}
			}
		})
	}
	time.Sleep(time.Until(deadline))
	stop.Store(true)
	elapsed := time.Since(start)
	wg.Wait()
	cpu := e.cpu.sample().sub(cpu0)
	cpu.client = selfCPU() - self0
	if firstErr != nil {
		return queueRun{}, firstErr
	}
	after, err := e.poolStats(ctx)
	if err != nil {
		return queueRun{}, err
	}
	if elapsed > d {
		elapsed = d
	}
	return queueRun{jobs: done.Load(), elapsed: elapsed, stats: after.sub(before), statJobs: all.Load(), cpu: cpu}, nil
}

// listIndex creates (on) or drops the index of Jobs.List, as the
// migrations define it.
func (e *env) listIndex(ctx context.Context, on bool) error {
	if on {
		return e.exec(ctx, `CREATE INDEX IF NOT EXISTS `+listIndex+` ON `+schema+`.jobs (tenant_id, created_at, id)`)
	}
	return e.exec(ctx, `DROP INDEX IF EXISTS `+schema+`.`+listIndex)
}

// flaky picks about one job in every: the same ones on every run.
func flaky(payload json.RawMessage, every int) bool {
	var h uint32 = 2166136261
	for _, c := range payload {
		h = (h ^ uint32(c)) * 16777619
	}
	return h%uint32(every) == 0
}

// queueResult is the queue table of the report.
type queueResult struct {
	claim, workers int
	fill, fillMin  int
	failEvery      int
	runs           map[string][]queueRun // contender → one run per round
	stats          bool                  // the runs of jobs_next have their breakdown
}

// The queue contenders.
const (
	qAnchor = "anchor" // pgbench bench/queue_min.sql
	qToday  = "today"  // pgbench bench/queue_today.sql
	qPGX    = "poolsafe-pgx"
	qPQ     = "poolsafe-pq"
	// qReplan is qPGX with jobs_next planning its statements on every call
	// (plan_cache_mode = force_custom_plan): what the cached plans save.
	qReplan = "poolsafe-pgx-replan"
	// qLoose is qPGX on jobs without a batch: what batch accounting costs.
	qLoose = "poolsafe-pgx-loose"
	// qNextSQL is the loop's statement with pgbench as the client
	// (bench/queue_next.sql): the server's side alone.
	qNextSQL = "next-pgbench"
	// qNoList and qNextNoList are qPGX and qNextSQL without the index that
	// serves Jobs.List (jobs_tenant_created_idx), dropped for the run: what
	// maintaining it costs the queue (every claim and finish is an update
	// that cannot be HOT, so it inserts into every index of jobs).
	qNoList     = "poolsafe-pgx-nolist"
	qNextNoList = "next-pgbench-nolist"
)

// listIndex is the index Jobs.List reads, which qNoList and qNextNoList drop.
const listIndex = `jobs_tenant_created_idx`

var queueContenders = []string{qAnchor, qToday, qPGX, qPQ, qNextSQL, qReplan, qLoose, qNoList, qNextNoList}

var queueLabel = map[string]string{
	qAnchor:     "anchor: pgbench, minimal queue SQL (`bench/queue_min.sql`)",
	qToday:      "today: pgbench, today's statements, one job each (`bench/queue_today.sql`)",
	qPGX:        "poolsafe, pgx: `Jobs.Next` loop",
	qPQ:         "poolsafe, lib/pq: `Jobs.Next` loop",
	qReplan:     "poolsafe, pgx, plans not cached (jobs_next with `force_custom_plan`)",
	qLoose:      "poolsafe, pgx, the same jobs without a batch (no batch accounting)",
	qNextSQL:    "the loop's statement (`jobs_next`) with pgbench as the client (`bench/queue_next.sql`)",
	qNoList:     "poolsafe, pgx, without the index of `Jobs.List` (`" + listIndex + "` dropped for the run)",
	qNextNoList: "the loop's statement with pgbench as the client, without the index of `Jobs.List`",
}

func measureQueue(ctx context.Context, e *env, o options, m *machine) (*queueResult, error) {
	cfg := loopConfig{workers: o.workers, claim: o.claim, lease: 30 * time.Second, failEvery: 100}
	res := &queueResult{claim: o.claim, workers: o.workers, failEvery: cfg.failEvery, runs: map[string][]queueRun{}}
	// Enough jobs that no contender runs dry on a quiet machine: the anchor
	// reached 16,000 jobs a second here, the project's loop 15,000 without
	// batches, today's statements 550.
	fillMin, fill, fillToday := int(o.runTime.Seconds()*40000), int(o.runTime.Seconds()*25000), int(o.runTime.Seconds()*2000)
	if o.smoke {
		fillMin, fill, fillToday = 2000, 2000, 500
	}
	res.fill, res.fillMin = fill, fillMin
	res.stats = e.statsOn(ctx)
	// track resets the statement statistics when the server keeps them:
	// called after a contender's fill, right before its run.
	track := func() error {
		if !res.stats {
			return nil
		}
		return e.resetStatements(ctx)
	}
	order := []string{qAnchor, qPGX, qToday, qPQ, qNextSQL, qReplan, qLoose, qNoList, qNextNoList}
	if o.contenders != "" {
		order = strings.Split(o.contenders, ",")
	}
	for r := range o.rounds {
		for i := range order {
			name := order[(i+r)%len(order)] // rotated: each contender runs in every position
			var (
				run queueRun
				err error
			)
			m.sample()
			switch name {
			case qAnchor:
				if err = e.fillMin(ctx, fillMin); err == nil {
					run, err = e.pgbenchQueue(ctx, "bench/queue_min.sql", o.workers, o.runTime,
						`SELECT count(*) FROM `+schema+`.minq WHERE state = 'done'`, fmt.Sprintf("n=%d", o.claim))
				}
			case qToday:
				if err = e.fillJobs(ctx, fillToday, false); err == nil {
					run, err = e.pgbenchQueue(ctx, "bench/queue_today.sql", o.workers, o.runTime,
						`SELECT count(*) FROM `+schema+`.jobs WHERE state = 'succeeded'`,
						"n=1", "lease=30000", `result={"ok":1}`)
				}
			case qNextSQL, qNextNoList:
				if err = e.fillJobs(ctx, fill, false); err == nil {
					err = e.listIndex(ctx, name != qNextNoList)
				}
				if err == nil {
					err = track()
				}
				if err == nil {
					run, err = e.pgbenchQueue(ctx, "bench/queue_next.sql", o.workers, o.runTime,
						`SELECT count(*) FROM `+schema+`.jobs WHERE state = 'succeeded'`,
						fmt.Sprintf("n=%d", o.claim), "ids={}", "rs={}", "es={}")
				}
			case qPGX, qPQ, qLoose, qNoList:
				drv := driverconf.PGX
				if name == qPQ {
					drv = driverconf.PQ
				}
				if err = e.fillJobs(ctx, fill, name == qLoose); err == nil {
					err = e.listIndex(ctx, name != qNoList)
				}
				if err == nil {
					err = track()
				}
				if err == nil {
					run, err = e.workerLoop(ctx, drv, cfg, o.runTime)
				}
			case qReplan:
				fn := schema + `.jobs_next(text, uuid[], text[], text[], int, bigint, uuid, bigint, bigint)`
				if err = e.fillJobs(ctx, fill, false); err == nil {
					err = e.exec(ctx, `ALTER FUNCTION `+fn+` SET plan_cache_mode = force_custom_plan`)
				}
				if err == nil {
					run, err = e.workerLoop(ctx, driverconf.PGX, cfg, o.runTime)
					if rerr := e.exec(ctx, `ALTER FUNCTION `+fn+` SET plan_cache_mode = force_generic_plan`); err == nil {
						err = rerr
					}
				}
			}
			m.sample()
			if err == nil && (name == qNoList || name == qNextNoList) {
				err = e.listIndex(ctx, true) // the next contenders run with it
			}
			if err == nil && res.stats && name != qAnchor && name != qToday && name != qReplan {
				run.parts, err = e.nextBreakdown(ctx)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			queued := fill
			switch name {
			case qAnchor:
				queued = fillMin
			case qToday:
				queued = fillToday
			}
			if run.statJobs >= int64(queued)*9/10 && !o.smoke {
				return nil, fmt.Errorf("%s: finished %d of the %d jobs queued: the queue ran dry, the rate is wrong", name, run.statJobs, queued)
			}
			fmt.Fprintf(os.Stderr, "queue round %d %-13s %7.0f jobs/s\n", r+1, name, run.rate())
			res.runs[name] = append(res.runs[name], run)
		}
	}
	return res, nil
}
