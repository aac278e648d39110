// Command demo shows what poolsafe is for, through a transaction-mode pooler.
// First the raw drivers with their default settings run 32 goroutines × 50
// queries, each goroutine with its own SQL text and every answer checked:
// pgx fails, lib/pq returns other clients' rows. Then the back office's
// scraping pipeline runs through poolsafe, on one driver and then on the
// other, each with its own handle: the driver submits its domains in
// batches, eight workers run the project's worker loop — repo.Jobs.Next
// reports the outcomes of the jobs a worker ran and claims the next 20 in
// one statement — until the batches have finished (about one job in 100,
// the queue benchmark's share, fails once and is retried after a backoff of
// 20–200 ms), and every job is read back and checked. It prints each driver's jobs/s, from the first
// claim to the last batch's finish, and one line saying what bounds that
// rate: the pool's server connections (the pool_size PgBouncer's admin
// console reports, or the distinct server backends the demo met when the
// console does not let it in). It exits non-zero if a job was lost,
// completed twice or holds another domain's result, or a batch did not
// complete.
//
//	make demo                                    # starts the local stack and runs this
//	DATABASE_URL=… DIRECT_URL=… go run ./examples/demo
//
// DATABASE_URL is the pooler, DIRECT_URL a session-capable URL to the same
// database for the migrations (driverconf.FromEnv reads both). Flags:
// -domains per driver (default 20000, in batches of up to 10000), -workers
// per driver (8), -claim jobs per Next (20), -flaky (one job in N fails its
// first attempt; 100), -short (200 domains), -json
// (the results as one JSON object on stdout, the rest on stderr: the
// benchmark report's goal 4 reads it).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the raw drivers, for the "before" run
	_ "github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

const schema = "poolsafe_demo"

// The worker loop's settings: a retry backoff sized for a demo (repo's
// default starts at seconds), the lease of a claim, and how long an idle
// worker waits before it asks again.
const (
	backoffBase = 20 * time.Millisecond
	backoffMax  = 200 * time.Millisecond
	lease       = 30 * time.Second
	idlePoll    = 15 * time.Millisecond
)

// out is where the demo talks: stdout, or stderr under -json.
var out io.Writer = os.Stdout

// flaky: about one job in flaky fails its first attempt (0: none).
var flaky int

func main() {
	domains := flag.Int("domains", 20000, "domains per driver, submitted in batches of up to 10000")
	workers := flag.Int("workers", 8, "workers per driver")
	claim := flag.Int("claim", 20, "jobs each Jobs.Next call claims")
	flag.IntVar(&flaky, "flaky", 100, "about one job in `N` fails its first attempt (0: none); 100 is the queue benchmark's share")
	short := flag.Bool("short", false, "a short run (200 domains)")
	jsonOut := flag.Bool("json", false, "print the results as one JSON object on stdout, everything else on stderr")
	flag.Parse()
	if *short {
		*domains = 200
	}
	if *domains < 1 || *workers < 1 || *claim < 1 || *claim > repo.MaxClaimJobs || flaky < 0 {
		fmt.Fprintf(os.Stderr, "demo: -domains and -workers must be at least 1, -claim between 1 and %d, -flaky not negative\n", repo.MaxClaimJobs)
		os.Exit(2)
	}
	if *jsonOut {
		out = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run(ctx, *domains, *workers, *claim)
	if *jsonOut && res != nil {
		if jerr := json.NewEncoder(os.Stdout).Encode(res); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// results is what -json prints.
type results struct {
	Domains int `json:"domains"`
	Workers int `json:"workers"`
	Claim   int `json:"claim"`
	Flaky   int `json:"flaky"` // about one job in Flaky failed its first attempt
	// ServerConns is the pool's server connections (0: unknown or no
	// transaction pooler), ServerConnsAtLeast true when it is only a lower
	// bound, and ServerConnsFrom where the figure comes from.
	ServerConns        int             `json:"server_conns"`
	ServerConnsAtLeast bool            `json:"server_conns_at_least"`
	ServerConnsFrom    string          `json:"server_conns_from"`
	Drivers            []driverResults `json:"drivers"`
	OK                 bool            `json:"ok"`
}

type driverResults struct {
	Driver     string  `json:"driver"`
	Jobs       int64   `json:"jobs"`
	JobsPerSec float64 `json:"jobs_per_s"` // from the first claim to the last batch's finish
	Seconds    float64 `json:"seconds"`
	Errors     int64   `json:"errors"`
	Wrong      int64   `json:"wrong"`
	Duplicates int64   `json:"duplicates"`
	Lost       int64   `json:"lost"`
	Retries    int64   `json:"retries"`
	Batches    string  `json:"batches"`
}

func run(ctx context.Context, nDomains, nWorkers, claim int) (*results, error) {
	base, err := driverconf.FromEnv()
	if err != nil {
		return nil, fmt.Errorf("%w\n(run `make demo` to use the local PostgreSQL + PgBouncer stack)", err)
	}
	mode := base.WithDefaults().PoolMode
	fmt.Fprintf(out, "database %s, pool mode %s\n", driverconf.RedactURL(base.URL), mode)
	if mode == driverconf.Transaction {
		rawDrivers(ctx, base.URL)
	}
	if err := repo.Migrate(ctx, base, repo.WithSchema(schema)); err != nil {
		return nil, err
	}
	defer func() {
		if err := repo.MigrateDown(context.Background(), base, repo.WithSchema(schema)); err != nil {
			fmt.Fprintln(os.Stderr, "demo: clean up:", err)
		}
	}()

	domains := make([]string, nDomains)
	for i := range domains {
		domains[i] = fmt.Sprintf("shop-%06d.example.com", i)
	}
	nBatches := (nDomains + repo.MaxBatchDomains - 1) / repo.MaxBatchDomains
	batches := "1 batch"
	if nBatches > 1 {
		batches = fmt.Sprintf("%d batches", nBatches)
	}
	retries := "no job fails"
	if flaky > 0 {
		retries = fmt.Sprintf("about one job in %d fails once, retried after %s–%s", flaky, backoffBase, backoffMax)
	}
	fmt.Fprintf(out, "each driver on its own, one after the other: %d domains in %s, %d workers, "+
		"each Jobs.Next reporting its outcomes and claiming %d jobs; %s\n",
		nDomains, batches, nWorkers, claim, retries)
	res := &results{Domains: nDomains, Workers: nWorkers, Claim: claim, Flaky: flaky}
	var ps []*pipeline
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		cfg := base
		cfg.Driver = d
		cfg.MaxOpenConns = nWorkers + 1
		cfg.MaxIdleConns = cfg.MaxOpenConns // no connection closed and reopened between calls
		db, err := driverconf.Open(cfg)
		if err != nil {
			return nil, err
		}
		p := &pipeline{driver: d, db: db, tenant: uuid.New(), done: map[uuid.UUID]int{},
			repos: repo.New(db, repo.WithSchema(schema), repo.WithRetryBackoff(backoffBase, backoffMax))}
		p.run(ctx, domains, nWorkers, claim)
		p.verdict = p.verify(ctx)
		if res.ServerConnsFrom == "" && mode == driverconf.Transaction {
			res.ServerConns, res.ServerConnsAtLeast, res.ServerConnsFrom = serverConns(ctx, base.URL, db, nWorkers)
		}
		db.Close()
		ps = append(ps, p)
	}

	res.OK = true
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\ndriver\tjobs\tjobs/s\terrors\twrong answers\tduplicates\tlost\tretries\tbatches\t")
	for _, p := range ps {
		v := p.verdict
		ok := p.errors.Load()+v.wrong+v.duplicates+v.lost == 0 && v.completed == len(p.batches) && len(p.batches) > 0
		res.OK = res.OK && ok
		d := driverResults{Driver: string(p.driver), Jobs: v.jobs, Seconds: p.elapsed.Seconds(), Errors: p.errors.Load(),
			Wrong: v.wrong, Duplicates: v.duplicates, Lost: v.lost, Retries: p.retries.Load(), Batches: v.statuses}
		if p.elapsed > 0 {
			d.JobsPerSec = float64(v.jobs) / p.elapsed.Seconds()
		}
		res.Drivers = append(res.Drivers, d)
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%s\t\n", d.Driver, d.Jobs, d.JobsPerSec,
			d.Errors, d.Wrong, d.Duplicates, d.Lost, d.Retries, d.Batches)
	}
	w.Flush()
	switch {
	case mode == driverconf.Transaction && res.ServerConns > 0 && !res.ServerConnsAtLeast:
		fmt.Fprintf(out, "\nwhat bounds jobs/s: the pool's %d server connections (%s): every Next runs on one of them, so at most %d run at once, whatever the %d workers.\n",
			res.ServerConns, res.ServerConnsFrom, res.ServerConns, nWorkers)
	case mode == driverconf.Transaction && res.ServerConns > 0:
		fmt.Fprintf(out, "\nwhat bounds jobs/s: the pool's server connections, at least %d (%s): every Next runs on one of them, and the %d workers share them.\n",
			res.ServerConns, res.ServerConnsFrom, nWorkers)
	case mode == driverconf.Transaction:
		fmt.Fprintf(out, "\nwhat bounds jobs/s: the pool's server connections (%s): every Next runs on one of them, and the %d workers share them.\n",
			res.ServerConnsFrom, nWorkers)
	default:
		fmt.Fprintf(out, "\nwhat bounds jobs/s: the %d workers' own connections (pool mode %s, no transaction pooler to share): one Next each at a time.\n",
			nWorkers, mode)
	}
	if !res.OK {
		return res, errors.New("something was lost, duplicated or wrong, or a batch did not complete (see above)")
	}
	fmt.Fprintln(out, "every job completed exactly once with the right answer, on both drivers.")
	return res, nil
}

// rawDrivers runs the checked queries on pgx and lib/pq opened the usual
// way, sql.Open with the same URL.
func rawDrivers(ctx context.Context, url string) {
	fmt.Fprintln(out, "first, the raw drivers with their default settings, same pooler, 32 goroutines × 50 checked queries:")
	for _, d := range []struct{ name, label string }{{"pgx", "pgx"}, {"postgres", "lib/pq"}} {
		db, err := sql.Open(d.name, url)
		if err != nil {
			fmt.Fprintf(out, "  raw %-6s cannot open: %v\n", d.label, err)
			continue
		}
		db.SetMaxOpenConns(16)
		var errs, wrong atomic.Int64
		var wg sync.WaitGroup
		for g := range 32 {
			// Each goroutine's own SQL text: an answer that comes from
			// another goroutine's statement is a wrong answer.
			q := fmt.Sprintf("SELECT $1::int8 * 1000 + %d /* goroutine %d */", g, g)
			wg.Go(func() {
				for i := range 50 {
					var got int64
					if err := queryRow(ctx, db, q, i, &got); err != nil {
						errs.Add(1)
					} else if got != int64(i*1000+g) {
						wrong.Add(1)
					}
				}
			})
		}
		wg.Wait()
		db.Close()
		fmt.Fprintf(out, "  raw %-6s 1600 queries: %4d errors, %4d wrong answers (another client's rows)\n", d.label, errs.Load(), wrong.Load())
	}
	fmt.Fprintln(out, "then the same pipeline through poolsafe:")
}

// queryRow turns a panic into an error: lib/pq can panic decoding another
// client's rows, sent in a format it did not ask for.
func queryRow(ctx context.Context, db *sql.DB, q string, arg int, dest *int64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("driver panicked: %v", p)
		}
	}()
	return db.QueryRowContext(ctx, q, arg).Scan(dest)
}

// serverConns returns the number of server connections the pooler gives
// the pool, whether that is only a lower bound, and where the figure comes
// from: the pool_size of PgBouncer's SHOW DATABASES when its admin console
// lets the demo's user in, else the distinct server backends met by
// concurrent queries through db (a lower bound). 0 is unknown.
func serverConns(ctx context.Context, poolURL string, db *sqladapter.DB, workers int) (n int, atLeast bool, from string) {
	if n, name, err := pgbouncerPoolSize(ctx, poolURL); err == nil {
		return n, false, fmt.Sprintf("pool_size of %s in PgBouncer's SHOW DATABASES", name)
	}
	pids := map[int64]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range 3 {
				var pid int64
				if err := db.GetContext(ctx, &pid, `SELECT pg_backend_pid() FROM pg_sleep(0.05)`); err == nil {
					mu.Lock()
					pids[pid] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(pids) == 0 {
		return 0, false, "how many is unknown: the pooler's admin console did not let the demo in, and the probe failed"
	}
	return len(pids), true, fmt.Sprintf("the distinct server backends %d concurrent queries met; the pooler's admin console did not let the demo in", workers)
}

// pgbouncerPoolSize asks PgBouncer's admin console — the database
// "pgbouncer" on the pooler's address, as the same user — for the pool
// size of poolURL's database.
func pgbouncerPoolSize(ctx context.Context, poolURL string) (int, string, error) {
	u, err := url.Parse(poolURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return 0, "", fmt.Errorf("not a postgres:// URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	q := url.Values{"connect_timeout": {"3"}, "default_query_exec_mode": {"simple_protocol"}}
	if s := u.Query().Get("sslmode"); s != "" {
		q.Set("sslmode", s)
	}
	u.Path, u.RawQuery = "/pgbouncer", q.Encode()
	admin, err := sql.Open("pgx", u.String())
	if err != nil {
		return 0, "", err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := admin.QueryContext(ctx, "SHOW DATABASES")
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, "", err
	}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return 0, "", err
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		if row["name"] == name {
			n, err := strconv.Atoi(row["pool_size"])
			if err != nil || n < 1 {
				return 0, "", fmt.Errorf("SHOW DATABASES: pool_size %q", row["pool_size"])
			}
			return n, name, nil
		}
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	return 0, "", fmt.Errorf("SHOW DATABASES: no database %q", name)
}

// result is what "scraping" a domain yields. It names the domain, so a
// result stored on another domain's job shows.
type result struct {
	Domain string `json:"domain"`
	Sum    uint32 `json:"sum"`
}

func scrape(domain string) result { return result{domain, crc32.ChecksumIEEE([]byte(domain))} }

type pipeline struct {
	driver  driverconf.Driver
	db      *sqladapter.DB
	repos   *repo.Repos
	tenant  uuid.UUID
	batches []repo.Batch
	// elapsed is from the first claim to the last batch's finish.
	elapsed time.Duration
	verdict verdict

	completed, retries, errors atomic.Int64
	finished                   atomic.Int64 // batches whose finish a Next reported
	stop                       atomic.Bool  // the batches finished, or a worker failed

	mu   sync.Mutex
	done map[uuid.UUID]int // job → outcomes recorded as completed
	end  time.Time         // when the Next that finished the last batch returned
}

var reported atomic.Int64

// report prints the first few problems.
func report(format string, args ...any) {
	if reported.Add(1) <= 10 {
		fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
	}
}

// run submits the batches and runs the workers until they have finished.
func (p *pipeline) run(ctx context.Context, domains []string, workers, claim int) {
	for i := 0; i < len(domains); i += repo.MaxBatchDomains {
		chunk := domains[i:min(i+repo.MaxBatchDomains, len(domains))]
		b, err := p.repos.Batches.Create(ctx, p.tenant, chunk,
			repo.BatchOptions{Name: fmt.Sprintf("demo %s %d", p.driver, len(p.batches)+1), Kind: "scrape"})
		if err != nil {
			p.errors.Add(1)
			report("%s: create batch: %v", p.driver, err)
			return
		}
		p.batches = append(p.batches, b)
	}
	// Open the workers' connections first: the rate starts at the first claim.
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { _ = p.db.PingContext(ctx) })
	}
	wg.Wait()
	finished := make(chan struct{})
	go p.progress(len(domains), finished)
	start := time.Now()
	for i := range workers {
		wg.Go(func() { p.work(ctx, fmt.Sprintf("demo-%s-%d", p.driver, i), claim) })
	}
	wg.Wait()
	close(finished)
	end := p.end
	if end.IsZero() { // no Next reported the last finish (a worker failed)
		end = time.Now()
	}
	p.elapsed = end.Sub(start)
	fmt.Fprintf(out, "  %-3s %6d/%d jobs completed in %s\n", p.driver, p.completed.Load(), len(domains), p.elapsed.Round(time.Millisecond))
}

// work runs the worker loop until the batches have finished: each Next
// records the outcomes of the jobs the previous one claimed and claims up
// to claim more.
func (p *pipeline) work(ctx context.Context, worker string, claim int) {
	var outcomes []repo.Outcome
	idle := 0
	for ctx.Err() == nil && !p.stop.Load() {
		res, err := p.repos.Jobs.Next(ctx, &p.tenant, worker, outcomes, claim, lease)
		now := time.Now()
		if err != nil {
			p.fail("%s: %s: next: %v", p.driver, worker, err)
			return
		}
		p.record(outcomes, res.Lost)
		p.finishes(res.Finished, now)
		outcomes = outcomes[:0]
		if len(res.Jobs) == 0 {
			// Nothing claimable: the batches have finished, or their last
			// jobs are running elsewhere or waiting out a retry backoff.
			if idle++; idle%20 == 0 && p.allFinished(ctx) {
				return
			}
			time.Sleep(idlePoll)
			continue
		}
		idle = 0
		for _, j := range res.Jobs {
			var in result
			_ = json.Unmarshal(j.Payload, &in)
			res := scrape(in.Domain)
			if flaky > 0 && res.Sum%uint32(flaky) == 0 && j.Attempts == 1 { // a flaky site: the retry succeeds
				outcomes = append(outcomes, repo.Outcome{ID: j.ID, Err: "connection reset by " + in.Domain})
				continue
			}
			b, _ := json.Marshal(res)
			outcomes = append(outcomes, repo.Outcome{ID: j.ID, Result: b})
		}
	}
}

// record counts the outcomes a Next call recorded.
func (p *pipeline) record(outcomes []repo.Outcome, lost []uuid.UUID) {
	if len(lost) > 0 {
		p.errors.Add(int64(len(lost)))
		report("%s: %d outcomes lost their lease, such as job %s", p.driver, len(lost), lost[0])
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range outcomes {
		switch {
		case o.Err != "":
			p.retries.Add(1)
		case !contains(lost, o.ID):
			p.completed.Add(1)
			p.done[o.ID]++
		}
	}
}

func contains(ids []uuid.UUID, id uuid.UUID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// finishes notes the batches a Next call finished; the last one stops the
// workers and ends the measured time.
func (p *pipeline) finishes(batches []repo.Batch, now time.Time) {
	for range batches { // the tenant's: Next claims only the pipeline's jobs
		if p.finished.Add(1) == int64(len(p.batches)) {
			p.mu.Lock()
			p.end = now
			p.mu.Unlock()
			p.stop.Store(true)
		}
	}
}

// allFinished asks whether every batch has finished: the Next that finished
// one reports it only once, and its answer can be lost with a connection.
func (p *pipeline) allFinished(ctx context.Context) bool {
	for _, b := range p.batches {
		got, err := p.repos.Batches.Get(ctx, p.tenant, b.ID)
		if err != nil || !got.Finished() {
			return false
		}
	}
	p.stop.Store(true)
	return true
}

func (p *pipeline) fail(format string, args ...any) {
	p.errors.Add(1)
	report(format, args...)
	p.stop.Store(true)
}

// progress prints the pipeline's progress every second until finished is
// closed.
func (p *pipeline) progress(total int, finished <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			fmt.Fprintf(out, "  %-3s %6d/%d\n", p.driver, p.completed.Load(), total)
		case <-finished:
			return
		}
	}
}

type verdict struct {
	jobs, wrong, duplicates, lost int64
	completed                     int    // batches that completed
	statuses                      string // the batches' statuses, counted
}

// verify reads every job of the batches back and checks it.
func (p *pipeline) verify(ctx context.Context) (v verdict) {
	counts := map[repo.BatchStatus]int{}
	var order []repo.BatchStatus
	for _, batch := range p.batches {
		var jobs []struct {
			ID      uuid.UUID `db:"id"`
			State   string    `db:"state"`
			Payload []byte    `db:"payload"`
			Result  []byte    `db:"result"`
		}
		err := p.db.SelectContext(ctx, &jobs, `SELECT id, state, payload, result FROM `+schema+`.jobs WHERE batch_id = $1`, batch.ID)
		b, berr := p.repos.Batches.Get(ctx, p.tenant, batch.ID)
		if err := errors.Join(err, berr); err != nil {
			report("%s: read back: %v", p.driver, err)
			v.lost += int64(batch.Total)
			continue
		}
		if counts[b.Status]++; counts[b.Status] == 1 {
			order = append(order, b.Status)
		}
		if b.Status == repo.BatchStatusCompleted {
			v.completed++
		}
		v.lost += int64(b.Total - len(jobs))
		for _, j := range jobs {
			var in, out result
			_ = json.Unmarshal(j.Payload, &in)
			_ = json.Unmarshal(j.Result, &out)
			switch {
			case j.State != string(repo.JobStateSucceeded):
				v.lost++
				report("%s: job %s (%s) ended %s", p.driver, j.ID, in.Domain, j.State)
				continue
			case out != scrape(in.Domain):
				v.wrong++
				report("%s: job %s: result %s for %s", p.driver, j.ID, j.Result, in.Domain)
			}
			v.jobs++
			if n := p.done[j.ID]; n != 1 {
				v.duplicates++
				report("%s: job %s completed %d times", p.driver, j.ID, n)
			}
		}
	}
	var s []string
	for _, st := range order {
		s = append(s, fmt.Sprintf("%d %s", counts[st], st))
	}
	v.statuses = strings.Join(s, ", ")
	if v.statuses == "" {
		v.statuses = "none"
	}
	return v
}
