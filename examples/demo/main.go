// Command demo shows what poolsafe is for, through a transaction-mode pooler.
// First the raw drivers with their default settings run 32 goroutines × 50
// queries, each goroutine with its own SQL text and every answer checked:
// pgx fails, lib/pq returns other clients' rows. Then the back office's
// scraping pipeline runs through poolsafe on both drivers at once: each
// submits a batch of domains, eight workers claim and complete the jobs
// (about one in seven fails once and is retried after a backoff), and every
// job is read back and checked. It exits non-zero if a job was lost,
// completed twice or holds another domain's result.
//
//	make demo                                    # starts the local stack and runs this
//	DATABASE_URL=… DIRECT_URL=… go run ./examples/demo
//
// DATABASE_URL is the pooler, DIRECT_URL a session-capable URL to the same
// database for the migrations (driverconf.FromEnv reads both). Flags:
// -domains (default 2000), -workers per driver (8), -short (200 domains).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"os/signal"
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

func main() {
	domains := flag.Int("domains", 2000, "domains in each driver's batch")
	workers := flag.Int("workers", 8, "workers per driver")
	short := flag.Bool("short", false, "a short run (200 domains)")
	flag.Parse()
	if *short {
		*domains = 200
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *domains, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nDomains, nWorkers int) error {
	base, err := driverconf.FromEnv()
	if err != nil {
		return fmt.Errorf("%w\n(run `make demo` to use the local PostgreSQL + PgBouncer stack)", err)
	}
	mode := base.WithDefaults().PoolMode
	fmt.Printf("database %s, pool mode %s\n", driverconf.RedactURL(base.URL), mode)
	if mode == driverconf.Transaction {
		rawDrivers(ctx, base.URL)
	}
	if err := repo.Migrate(ctx, base, repo.WithSchema(schema)); err != nil {
		return err
	}
	defer func() {
		if err := repo.MigrateDown(context.Background(), base, repo.WithSchema(schema)); err != nil {
			fmt.Fprintln(os.Stderr, "demo: clean up:", err)
		}
	}()

	domains := make([]string, nDomains)
	for i := range domains {
		domains[i] = fmt.Sprintf("shop-%05d.example.com", i)
	}
	fmt.Printf("each driver: a batch of %d domains, %d workers claiming through the pooler\n", nDomains, nWorkers)
	var ps []*pipeline
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		cfg := base
		cfg.Driver = d
		cfg.MaxOpenConns = nWorkers + 2
		db, err := driverconf.Open(cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		ps = append(ps, &pipeline{driver: d, db: db, repos: repo.New(db, repo.WithSchema(schema)),
			tenant: uuid.New(), done: map[uuid.UUID]int{}})
	}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.run(ctx, domains, nWorkers) })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	progress(ps, nDomains, finished)

	failed := false
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\ndriver\tjobs\tjobs/s\terrors\twrong answers\tduplicates\tlost\tretries\tbatch\t")
	for _, p := range ps {
		v := p.verify(ctx)
		failed = failed || p.errors.Load()+v.wrong+v.duplicates+v.lost > 0 || v.status != repo.BatchStatusCompleted
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.driver, v.jobs, float64(v.jobs)/p.elapsed.Seconds(),
			p.errors.Load(), v.wrong, v.duplicates, v.lost, p.retries.Load(), v.status)
	}
	w.Flush()
	if failed {
		return errors.New("something was lost, duplicated or wrong (see above)")
	}
	fmt.Println("\nevery job completed exactly once with the right answer, on both drivers.")
	return nil
}

// rawDrivers runs the checked queries on pgx and lib/pq opened the usual
// way, sql.Open with the same URL.
func rawDrivers(ctx context.Context, url string) {
	fmt.Println("first, the raw drivers with their default settings, same pooler, 32 goroutines × 50 checked queries:")
	for _, d := range []struct{ name, label string }{{"pgx", "pgx"}, {"postgres", "lib/pq"}} {
		db, err := sql.Open(d.name, url)
		if err != nil {
			fmt.Printf("  raw %-6s cannot open: %v\n", d.label, err)
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
		fmt.Printf("  raw %-6s 1600 queries: %4d errors, %4d wrong answers (another client's rows)\n", d.label, errs.Load(), wrong.Load())
	}
	fmt.Println("then the same pipeline through poolsafe:")
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
	batch   repo.Batch
	elapsed time.Duration

	completed, retries, errors atomic.Int64

	mu   sync.Mutex
	done map[uuid.UUID]int // job → successful Complete calls
}

var reported atomic.Int64

// report prints the first few problems.
func report(format string, args ...any) {
	if reported.Add(1) <= 10 {
		fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
	}
}

// run submits the batch and runs the workers until it has finished.
func (p *pipeline) run(ctx context.Context, domains []string, workers int) {
	start := time.Now()
	defer func() { p.elapsed = time.Since(start) }()
	b, err := p.repos.Batches.Create(ctx, p.tenant, domains, repo.BatchOptions{Name: "demo " + string(p.driver), Kind: "scrape"})
	if err != nil {
		p.errors.Add(1)
		report("%s: create batch: %v", p.driver, err)
		return
	}
	p.batch = b
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { p.work(ctx, fmt.Sprintf("demo-%s-%d", p.driver, i)) })
	}
	wg.Wait()
}

// work claims and runs jobs until the batch has finished.
func (p *pipeline) work(ctx context.Context, worker string) {
	for ctx.Err() == nil {
		jobs, err := p.repos.Jobs.Claim(ctx, &p.tenant, worker, 4, 30*time.Second)
		if err != nil {
			p.errors.Add(1)
			report("%s: claim: %v", p.driver, err)
			return
		}
		if len(jobs) == 0 {
			if b, err := p.repos.Batches.Get(ctx, p.tenant, p.batch.ID); err == nil && b.Finished() {
				return
			}
			time.Sleep(50 * time.Millisecond) // failed jobs wait out their retry backoff
			continue
		}
		for _, j := range jobs {
			var in result
			_ = json.Unmarshal(j.Payload, &in)
			res := scrape(in.Domain)
			out, _ := json.Marshal(res)
			if res.Sum%7 == 0 && j.Attempts == 1 { // a flaky site: the retry succeeds
				_, err = p.repos.Jobs.Fail(ctx, j.ID, worker, "connection reset by "+in.Domain)
				p.retries.Add(1)
			} else if _, err = p.repos.Jobs.Complete(ctx, j.ID, worker, out); err == nil {
				p.completed.Add(1)
				p.mu.Lock()
				p.done[j.ID]++
				p.mu.Unlock()
			}
			if err != nil {
				p.errors.Add(1)
				report("%s: job %s: %v", p.driver, j.ID, err)
			}
		}
	}
}

type verdict struct {
	jobs, wrong, duplicates, lost int64
	status                        repo.BatchStatus
}

// verify reads every job of the batch back and checks it.
func (p *pipeline) verify(ctx context.Context) (v verdict) {
	var jobs []struct {
		ID      uuid.UUID `db:"id"`
		State   string    `db:"state"`
		Payload []byte    `db:"payload"`
		Result  []byte    `db:"result"`
	}
	err := p.db.SelectContext(ctx, &jobs, `SELECT id, state, payload, result FROM `+schema+`.jobs WHERE batch_id = $1`, p.batch.ID)
	b, berr := p.repos.Batches.Get(ctx, p.tenant, p.batch.ID)
	if err := errors.Join(err, berr); err != nil {
		report("%s: read back: %v", p.driver, err)
		return verdict{lost: int64(p.batch.Total)}
	}
	v.status, v.lost = b.Status, int64(b.Total-len(jobs))
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
	return v
}

// progress prints the pipelines' progress every two seconds until finished
// is closed.
func progress(ps []*pipeline, total int, finished <-chan struct{}) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-finished:
			return
		}
		for _, p := range ps {
			fmt.Printf("  %-3s %5d/%d", p.driver, p.completed.Load(), total)
		}
		fmt.Println()
	}
}
