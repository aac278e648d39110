package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// The workload's shape. Small on purpose: the suite runs 24 of them.
const (
	schema     = "faults" // repo's tables and the execution log live here
	nBatches   = 4
	perBatch   = 50
	nJobs      = nBatches * perBatch
	claimSize  = 4
	jobLease   = 3 * time.Second
	maxAttempt = 2 // per job, in every batch but the last
	// createEvery spaces the batches: jobs arrive for 1.5 s, and the faults
	// (0.2-3 s after the start) meet work in flight.
	createEvery = 500 * time.Millisecond

	callTimeout = 2 * time.Second        // every call's deadline: shorter than the 12 s stall
	hangGrace   = 500 * time.Millisecond // a call returning later than deadline+grace hung
	runTimeout  = 45 * time.Second       // a run not done by then has lost jobs
)

// sqlExecLog records one execution of a job, written in the transaction
// that completes it: a job completed twice has two rows.
const sqlExecLog = `CREATE TABLE IF NOT EXISTS ` + schema + `.fault_exec (
	tenant_id uuid NOT NULL,
	job_id    uuid NOT NULL,
	attempt   int NOT NULL,
	worker    text NOT NULL,
	at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (job_id, attempt, worker)
)`

// A retried completion by the same worker of the same attempt is one
// execution, not two.
const sqlExecInsert = `INSERT INTO ` + schema + `.fault_exec (tenant_id, job_id, attempt, worker)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`

// failing says whether a domain's job fails by design: one in ten of the
// last batch's, which allows one attempt each, so they end failed at once
// (a retry would wait out repo.RetryBackoffBase, 1-2 s). Retries are
// exercised all the same: every lease a fault makes expire is requeued.
func failing(i int) bool { return i >= (nBatches-1)*perBatch && i%10 == 3 }

// batchAttempts is a batch's MaxAttempts.
func batchAttempts(b int) int {
	if b == nBatches-1 {
		return 1
	}
	return maxAttempt
}

func domainName(i int) string { return fmt.Sprintf("site-%03d.example.org", i) }

// pipeline is one run of the job pipeline: a producer creating batches,
// workers claiming and completing their jobs, and a rescuer taking back
// expired leases, all through one handle.
type pipeline struct {
	scenario string
	driver   driverconf.Driver
	db       *sqladapter.DB
	repos    *repo.Repos
	tenant   uuid.UUID
	workers  int
	index    map[string]int // domain → its number

	stop      chan struct{} // closed when the run ends
	stopOnce  sync.Once
	produced  chan struct{} // closed when the producer is done
	faultLive atomic.Bool   // a stack-level fault is being injected

	// Calls until shortUntil get a 1 ms deadline with probability
	// shortFrac.
	shortFrac  float64
	shortUntil atomic.Int64 // unix nanoseconds
	rngMu      sync.Mutex
	rng        *rand.Rand

	calls, failures atomic.Int64
	maxOver         atomic.Int64 // nanoseconds past a deadline, worst call
	createdByCall   atomic.Int64 // Create calls that returned success
	createRepeated  atomic.Int64 // Creates that answered after an earlier attempt failed

	mu         sync.Mutex
	overruns   []overrun         // calls that returned later than deadline+hangGrace
	hangStacks map[int64]string  // call → goroutines while it ran late (captureHang)
	notices    map[uuid.UUID]int // batch → finish notices workers and rescuer received
	errs       map[string]int    // error samples → count
	problems   []string
}

func newPipeline(scenario string, d driverconf.Driver, db *sqladapter.DB, workers int) *pipeline {
	p := &pipeline{
		scenario: scenario, driver: d, db: db, workers: workers,
		repos:      repo.New(db, repo.WithSchema(schema)),
		tenant:     uuid.New(),
		index:      map[string]int{},
		stop:       make(chan struct{}),
		produced:   make(chan struct{}),
		rng:        rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		notices:    map[uuid.UUID]int{},
		errs:       map[string]int{},
		hangStacks: map[int64]string{},
	}
	for i := range nJobs {
		p.index[domainName(i)] = i
	}
	return p
}

func (p *pipeline) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *pipeline) halt() { p.stopOnce.Do(func() { close(p.stop) }) }

// sleep waits d, or less when the run stops; it reports whether the run
// goes on.
func (p *pipeline) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.stop:
		return false
	case <-t.C:
		return true
	}
}

func (p *pipeline) problem(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.problems) < 12 {
		p.problems = append(p.problems, fmt.Sprintf(format, args...))
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\(\d+ms\)|:\d{4,5}->`)

func (p *pipeline) noteErr(op string, err error) {
	msg := uuidRE.ReplaceAllString(err.Error(), "…")
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := op + ": " + msg
	if _, ok := p.errs[k]; ok || len(p.errs) < 16 {
		p.errs[k]++
	}
}

// errorSummary lists the most frequent errors the workload saw.
func (p *pipeline) errorSummary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range p.errs {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].k < all[j].k })
	var b strings.Builder
	for i, e := range all {
		if i == 6 {
			break
		}
		fmt.Fprintf(&b, "\n\t%5d× %s", e.n, e.k)
	}
	return b.String()
}

func (p *pipeline) notice(batch uuid.UUID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notices[batch]++
}

// deadline is the next call's deadline.
func (p *pipeline) deadline() time.Duration {
	if p.shortFrac > 0 && time.Now().UnixNano() < p.shortUntil.Load() {
		p.rngMu.Lock()
		short := p.rng.Float64() < p.shortFrac
		p.rngMu.Unlock()
		if short {
			return time.Millisecond
		}
	}
	return callTimeout
}

// call runs one database call with its own deadline (never derived from
// the run's end: stopping the run must not cancel a statement) and checks
// that it returned in time.
func (p *pipeline) call(op string, fn func(ctx context.Context) error) error {
	d := p.deadline()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	start := time.Now()
	// A call still running past its deadline and the grace: keep the
	// goroutines' stacks, to show where it waits.
	id := p.calls.Add(1)
	watchdog := time.AfterFunc(d+hangGrace, func() { p.captureHang(id, op) })
	err := fn(ctx)
	watchdog.Stop()
	took := time.Since(start)
	cancel()
	if over := took - d; over > 0 {
		for {
			cur := p.maxOver.Load()
			if int64(over) <= cur || p.maxOver.CompareAndSwap(cur, int64(over)) {
				break
			}
		}
		if over > hangGrace {
			// Judged at the end of the run (judgeOverruns): hung, or
			// late because the process did not run.
			p.mu.Lock()
			if len(p.overruns) < maxOverruns {
				p.overruns = append(p.overruns, overrun{id: id, op: op, start: start, deadline: d, took: took, err: err})
			}
			p.mu.Unlock()
		}
	}
	if err != nil {
		p.failures.Add(1)
		p.noteErr(op, err)
	}
	return err
}

// backoff is a worker's jittered exponential pause after an error.
type backoff struct{ n int }

func (b *backoff) next() time.Duration {
	d := min(20*time.Millisecond<<b.n, 500*time.Millisecond)
	b.n = min(b.n+1, 5)
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// produce creates the batches one after another, like a client submitting
// work. A Create whose answer is lost may have written its batch — and
// may still be writing it on the server, after its connection broke — so a
// careful producer chooses each batch's ID before the first attempt and
// repeats the Create with it until one answers: a repeat returns the
// stored batch, and only a Create that wrote twice can leave two batches.
func (p *pipeline) produce() {
	defer close(p.produced)
	for b := range nBatches {
		name := fmt.Sprintf("batch-%d", b)
		domains := make([]string, perBatch)
		for i := range domains {
			domains[i] = domainName(b*perBatch + i)
		}
		opts := repo.BatchOptions{ID: uuid.New(), Name: name, Kind: "scrape", MaxAttempts: batchAttempts(b)}
		var bo backoff
		for attempt := 0; !p.stopped(); attempt++ {
			err := p.call("create", func(ctx context.Context) error {
				_, err := p.repos.Batches.Create(ctx, p.tenant, domains, opts)
				return err
			})
			if err == nil {
				p.createdByCall.Add(1)
				if attempt > 0 {
					p.createRepeated.Add(1)
				}
				break
			}
			p.sleep(bo.next())
		}
		p.sleep(createEvery) // jobs keep arriving while the faults play out
	}
}

// work is one worker: claim, run, complete, until the run ends.
func (p *pipeline) work(name string) {
	var bo backoff
	idle := 10 * time.Millisecond
	for !p.stopped() {
		var jobs []repo.Job
		err := p.call("claim", func(ctx context.Context) (err error) {
			jobs, err = p.repos.Jobs.Claim(ctx, &p.tenant, name, claimSize, jobLease)
			return err
		})
		if err != nil {
			p.sleep(bo.next())
			continue
		}
		bo.reset()
		if len(jobs) == 0 {
			p.sleep(idle)
			idle = min(2*idle, 200*time.Millisecond)
			continue
		}
		idle = 10 * time.Millisecond
		for _, j := range jobs {
			p.runJob(name, j)
		}
	}
}

// runJob does a claimed job's work and reports its end, retrying the report
// until it goes through, the job turns out not to be the worker's any more
// (repo.ErrLeaseLost: it was completed already, or rescued), or the lease
// is over (the rescuer hands the job out again).
func (p *pipeline) runJob(worker string, j repo.Job) {
	claimed := time.Now()
	var in struct {
		Domain string `json:"domain"`
	}
	if err := json.Unmarshal(j.Payload, &in); err != nil {
		p.problem("job %s: bad payload %s", j.ID, j.Payload)
		return
	}
	i, ok := p.index[in.Domain]
	if !ok {
		p.problem("job %s: unknown domain %q", j.ID, in.Domain)
		return
	}
	time.Sleep(time.Millisecond) // the scrape
	fail := failing(i)
	result, _ := json.Marshal(map[string]any{"domain": in.Domain, "worker": worker})

	var bo backoff
	for !p.stopped() && time.Since(claimed) < jobLease {
		var tr repo.Transition
		err := p.call("complete", func(ctx context.Context) error {
			if fail {
				var err error
				tr, err = p.repos.Jobs.Fail(ctx, j.ID, worker, "designed failure")
				return err
			}
			return p.db.InTx(ctx, func(tx *sqladapter.Tx) error {
				if _, err := tx.ExecContext(ctx, sqlExecInsert, p.tenant, j.ID, j.Attempts, worker); err != nil {
					return err
				}
				var err error
				tr, err = repo.New(tx, repo.WithSchema(schema)).Jobs.Complete(ctx, j.ID, worker, result)
				return err
			})
		})
		if err == nil {
			if tr.BatchFinished && tr.Batch != nil {
				p.claimNotice(worker, tr.Batch.ID)
			}
			return
		}
		if errors.Is(err, repo.ErrLeaseLost) {
			return
		}
		p.sleep(bo.next())
	}
}

// rescue takes back expired leases twice a second, as a deployment's
// janitor would.
func (p *pipeline) rescue() {
	for p.sleep(500 * time.Millisecond) {
		var res repo.RescueResult
		err := p.call("rescue", func(ctx context.Context) (err error) {
			res, err = p.repos.Jobs.RescueExpired(ctx)
			return err
		})
		if err == nil {
			for _, b := range res.FinishedBatches {
				p.claimNotice("rescuer", b)
			}
		}
		p.sweep()
	}
}

// claimNotice is what the worker (or rescuer) that finished a batch does:
// claim its finish notice, repeating the call until it answers (a repeat
// with the same key is safe). Only a successful claim is a notice.
func (p *pipeline) claimNotice(by string, batch uuid.UUID) {
	for attempt := 0; attempt < 50; attempt++ {
		var claimed bool
		err := p.call("claim notice", func(ctx context.Context) (err error) {
			_, claimed, err = p.repos.Batches.ClaimFinished(ctx, p.tenant, batch, by)
			return err
		})
		if err == nil {
			if claimed {
				p.notice(batch)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweep is the reconciler: it claims the notices nobody claimed — those
// whose finishing answer was lost — under a fresh key, repeating the call
// until it answers.
func (p *pipeline) sweep() {
	key := "sweeper:" + uuid.NewString()
	for attempt := 0; attempt < 50; attempt++ {
		var got []repo.Batch
		err := p.call("sweep notices", func(ctx context.Context) (err error) {
			got, err = p.repos.Batches.ClaimFinishNotices(ctx, &p.tenant, key, 100, 200*time.Millisecond)
			return err
		})
		if err == nil {
			for _, b := range got {
				p.notice(b.ID)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verdict is what the database says about one run.
type verdict struct {
	jobs, lost, doubled, dupWrites int
	problems                       []string // counters, notices, consistency
}

func (v *verdict) problem(format string, args ...any) {
	if len(v.problems) < 12 {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	}
}

// verify asks the database itself, over the direct URL, what the run left.
func (p *pipeline) verify(ctx context.Context, direct *sql.DB) (verdict, error) {
	v := verdict{jobs: nJobs}

	type batchRow struct {
		id                                 uuid.UUID
		name, status                       string
		total, succeeded, failed, canceled int
		finished                           bool
		// the truth, counted from its jobs
		nJobs, nSucceeded, nFailed, nCanceled, nOpen int
	}
	batches := map[uuid.UUID]*batchRow{}
	var order []uuid.UUID
	err := queryRows(ctx, direct, `SELECT id, name, status, total, succeeded, failed, cancelled, finished_at IS NOT NULL
		FROM `+schema+`.batches WHERE tenant_id = $1 ORDER BY created_at, id`, []any{p.tenant}, func(rows *sql.Rows) error {
		b := &batchRow{}
		if err := rows.Scan(&b.id, &b.name, &b.status, &b.total, &b.succeeded, &b.failed, &b.canceled, &b.finished); err != nil {
			return err
		}
		batches[b.id] = b
		order = append(order, b.id)
		return nil
	})
	if err != nil {
		return v, err
	}

	type jobRow struct {
		id      uuid.UUID
		batch   uuid.UUID
		domain  string
		state   string
		attempt int
	}
	var jobs []jobRow
	err = queryRows(ctx, direct, `SELECT j.id, j.batch_id, d.domain, j.state, j.attempts
		FROM `+schema+`.jobs j JOIN `+schema+`.domains d ON d.tenant_id = j.tenant_id AND d.id = j.domain_id
		WHERE j.tenant_id = $1`, []any{p.tenant}, func(rows *sql.Rows) error {
		var j jobRow
		if err := rows.Scan(&j.id, &j.batch, &j.domain, &j.state, &j.attempt); err != nil {
			return err
		}
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return v, err
	}

	execs := map[uuid.UUID]int{}
	err = queryRows(ctx, direct, `SELECT job_id, count(*) FROM `+schema+`.fault_exec WHERE tenant_id = $1 GROUP BY job_id`,
		[]any{p.tenant}, func(rows *sql.Rows) error {
			var id uuid.UUID
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			execs[id] = n
			return nil
		})
	if err != nil {
		return v, err
	}

	// Lost: a submitted domain without a job in a final state.
	// Duplicate writes: a second batch of one name, a second job of one
	// domain. Doubled: a job completed more than once.
	final := map[string]bool{"succeeded": true, "failed": true, "cancelled": true}
	perDomain := map[string]int{}
	done := map[string]bool{}
	for _, j := range jobs {
		perDomain[j.domain]++
		if final[j.state] {
			done[j.domain] = true
		}
		if n := execs[j.id]; n > 1 {
			v.doubled += n - 1
		}
		switch n := execs[j.id]; {
		case j.state == "succeeded" && n == 0:
			v.problem("job %s (%s) succeeded without an execution", j.id, j.domain)
		case j.state != "succeeded" && n > 0:
			v.problem("job %s (%s) has an execution but is %s", j.id, j.domain, j.state)
		}
		b := batches[j.batch]
		if b == nil {
			v.problem("job %s is in batch %s, not the tenant's", j.id, j.batch)
			continue
		}
		b.nJobs++
		switch j.state {
		case "succeeded":
			b.nSucceeded++
		case "failed":
			b.nFailed++
		case "cancelled":
			b.nCanceled++
		default:
			b.nOpen++
		}
	}
	for i := range nJobs {
		if !done[domainName(i)] {
			v.lost++
		}
	}
	for _, n := range perDomain {
		v.dupWrites += max(n-1, 0)
	}
	perName := map[string]int{}
	for _, id := range order {
		perName[batches[id].name]++
	}
	for b := range nBatches {
		name := fmt.Sprintf("batch-%d", b)
		switch n := perName[name]; {
		case n == 0:
			v.problem("%s was never written", name)
		case n > 1:
			v.dupWrites += n - 1
			v.problem("%s was written %d times", name, n)
		}
	}

	// Counters against the truth, and finish notices.
	p.mu.Lock()
	notices := maps.Clone(p.notices)
	p.mu.Unlock()
	for _, id := range order {
		b := batches[id]
		if b.total != b.nJobs || b.succeeded != b.nSucceeded || b.failed != b.nFailed || b.canceled != b.nCanceled {
			v.problem("%s counters: total %d succeeded %d failed %d cancelled %d; its jobs: %d, %d, %d, %d",
				b.name, b.total, b.succeeded, b.failed, b.canceled, b.nJobs, b.nSucceeded, b.nFailed, b.nCanceled)
		}
		if b.finished != (b.nOpen == 0) {
			v.problem("%s: finished=%v (%s) with %d unfinished jobs", b.name, b.finished, b.status, b.nOpen)
		}
		if b.finished && notices[id] != 1 {
			v.problem("%s finished, and %d finish notices reached the workers (want exactly 1)", b.name, notices[id])
		}
	}
	return v, nil
}

// queryRows runs a query over the direct URL, retrying a few times while
// no row was read: right after a PostgreSQL restart the first attempts may
// meet a closed connection.
func queryRows(ctx context.Context, db *sql.DB, q string, args []any, scan func(*sql.Rows) error) error {
	var err error
	scanned := 0
	for attempt := 0; attempt < 5 && scanned == 0; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		err = func() error {
			rows, err := db.QueryContext(ctx, q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				scanned++
				if err := scan(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		}()
		if err == nil {
			return nil
		}
	}
	return err
}
