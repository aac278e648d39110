// Command demo runs the scraping back office's pipeline through a
// transaction-mode pooler on both drivers at once: for each of pgx and
// lib/pq it submits a batch of domains, and eight workers claim and
// complete the jobs (some fail on their first attempt and are retried after
// a backoff) while a progress line moves. At the end it checks every job:
// each completed exactly once, with the right result, and exactly one
// worker learned that its batch finished. It exits non-zero if anything was
// lost, duplicated or wrong.
//
//	make demo                        # starts the local stack and runs this
//	DATABASE_URL=… DIRECT_URL=… go run ./examples/demo
//
// Flags: -domains (default 2000), -workers per driver (8), -short (200
// domains, for CI), -keep (keep the poolsafe_demo schema afterwards).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the raw drivers, for the "before" run
	_ "github.com/lib/pq"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

const schema = "poolsafe_demo"

func main() {
	domains := flag.Int("domains", 2000, "domains in each driver's batch")
	workers := flag.Int("workers", 8, "workers per driver")
	short := flag.Bool("short", false, "a short run (200 domains), for CI")
	keep := flag.Bool("keep", false, "keep the "+schema+" schema afterwards")
	flag.Parse()
	if *short {
		*domains = 200
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *domains, *workers, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nDomains, nWorkers int, keep bool) error {
	base, err := driverconf.FromEnv()
	if err != nil {
		return fmt.Errorf("%w\n(run `make demo` to use the local PostgreSQL + PgBouncer stack)", err)
	}
	mode := base.WithDefaults().PoolMode
	fmt.Printf("database %s, pool mode %s\n", driverconf.RedactURL(base.URL), mode)
	if err := repo.Migrate(ctx, base, repo.WithSchema(schema)); err != nil {
		return err
	}
	if !keep {
		defer func() {
			if err := repo.MigrateDown(context.Background(), base, repo.WithSchema(schema)); err != nil {
				fmt.Fprintln(os.Stderr, "demo: clean up:", err)
			}
		}()
	}
	if mode == driverconf.Transaction {
		before(ctx, base.URL)
	}
	names := domainNames(nDomains)
	fmt.Printf("each driver: a batch of %d domain names (%d distinct), %d workers claiming through the pooler\n\n",
		len(names), nDomains, nWorkers)

	pipelines := []*pipeline{}
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		cfg := base
		cfg.Driver = d
		cfg.MaxOpenConns, cfg.MaxIdleConns = nWorkers+2, nWorkers+2
		db, err := driverconf.Open(cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		pipelines = append(pipelines, &pipeline{driver: d, db: db, repos: repo.New(db, repo.WithSchema(schema)),
			tenant: uuid.New(), workers: nWorkers, done: map[uuid.UUID]int{}})
	}

	var wg sync.WaitGroup
	for _, p := range pipelines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.err = p.run(ctx, names)
		}()
	}
	stopProgress := progress(pipelines, nDomains)
	wg.Wait()
	stopProgress()

	failed := false
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "driver\tjobs\tjobs/s\terrors\twrong answers\tduplicates\tlost\tretries\tfinish notices\tbatch\t")
	for _, p := range pipelines {
		v := p.verify(ctx)
		if p.err != nil || v.wrong+v.duplicates+v.lost+p.errors.Load() > 0 || p.finished.Load() != 1 || v.status != repo.BatchStatusCompleted {
			failed = true
		}
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", p.driver, v.jobs, float64(v.jobs)/p.elapsed.Seconds(),
			p.errors.Load(), v.wrong, v.duplicates, v.lost, p.retries.Load(), p.finished.Load(), v.status)
	}
	w.Flush()
	for _, p := range pipelines {
		if p.err != nil {
			fmt.Fprintf(os.Stderr, "demo: %s: %v\n", p.driver, p.err)
		}
		for _, e := range p.samples() {
			fmt.Fprintf(os.Stderr, "demo: %s: %s\n", p.driver, e)
		}
	}
	if failed {
		return errors.New("something was lost, duplicated or wrong (see above)")
	}
	fmt.Println("\nevery job completed exactly once with the right answer, on both drivers.")
	return nil
}

// before shows what the raw drivers' defaults do through the same pooler:
// 32 goroutines, each with its own SQL text, every answer checked.
func before(ctx context.Context, url string) {
	fmt.Println("first, the raw drivers with their default settings, same pooler, 32 goroutines × 50 checked queries:")
	for _, name := range []string{"pgx", "postgres"} {
		db, err := sql.Open(name, url)
		if err != nil {
			fmt.Printf("  raw %-6s cannot open: %v\n", name, err)
			continue
		}
		db.SetMaxOpenConns(16)
		r := testdb.Load(ctx, 32, 50, testdb.DBQuery(db))
		db.Close()
		label := map[string]string{"pgx": "pgx", "postgres": "lib/pq"}[name]
		fmt.Printf("  raw %-6s %4d queries: %4d errors, %4d wrong answers (another client's rows)\n", label, r.Queries, r.Errors, r.Wrong)
	}
	fmt.Println("then the same pipeline through poolsafe:")
}

// domainNames returns n distinct domains written the way users type them,
// plus a few repeats in other spellings that the batch collapses.
func domainNames(n int) []string {
	out := make([]string, 0, n+n/40)
	for i := range n {
		switch i % 10 {
		case 0:
			out = append(out, fmt.Sprintf("HTTPS://Shop-%05d.Example.COM:443/index.html", i))
		case 1:
			out = append(out, fmt.Sprintf("www.shop-%05d.example.com.", i))
		default:
			out = append(out, fmt.Sprintf("shop-%05d.example.com", i))
		}
	}
	for i := 0; i < n; i += 40 {
		out = append(out, fmt.Sprintf("http://shop-%05d.example.com/again", i)) // a repeat
	}
	return out
}

// answer is what scraping a domain yields: deterministic, so it can be checked.
func answer(domain string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(domain))
	return h.Sum32()
}

// flaky says whether a domain's first attempt fails (about one in seven).
func flaky(domain string) bool { return answer(domain)%7 == 0 }

type result struct {
	Domain string `json:"domain"`
	Answer uint32 `json:"answer"`
}

type pipeline struct {
	driver  driverconf.Driver
	db      *sqladapter.DB
	repos   *repo.Repos
	tenant  uuid.UUID
	workers int
	batch   repo.Batch
	elapsed time.Duration
	err     error

	completed, retries, errors, finished atomic.Int64

	mu       sync.Mutex
	done     map[uuid.UUID]int // job → completions seen
	problems []string
}

func (p *pipeline) problem(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.problems) < 5 {
		p.problems = append(p.problems, fmt.Sprintf(format, args...))
	}
}

func (p *pipeline) samples() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

func (p *pipeline) run(ctx context.Context, names []string) error {
	start := time.Now()
	defer func() { p.elapsed = time.Since(start) }()
	b, err := p.repos.Batches.Create(ctx, p.tenant, names, repo.BatchOptions{Name: "demo " + string(p.driver), Kind: "scrape"})
	if err != nil {
		return err
	}
	p.batch = b
	var wg sync.WaitGroup
	for i := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work(ctx, fmt.Sprintf("demo-%s-%d", p.driver, i))
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// work claims and runs jobs until the batch has finished.
func (p *pipeline) work(ctx context.Context, worker string) {
	idle := 10 * time.Millisecond
	for ctx.Err() == nil {
		jobs, err := p.repos.Jobs.Claim(ctx, &p.tenant, worker, 4, 30*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				p.errors.Add(1)
				p.problem("claim: %v", err)
			}
			return
		}
		if len(jobs) == 0 {
			b, err := p.repos.Batches.Get(ctx, p.tenant, p.batch.ID)
			if err == nil && b.Finished() {
				return
			}
			time.Sleep(idle) // retried jobs wait out their backoff
			idle = min(2*idle, 200*time.Millisecond)
			continue
		}
		idle = 10 * time.Millisecond
		for _, j := range jobs {
			p.runJob(ctx, worker, j)
		}
	}
}

func (p *pipeline) runJob(ctx context.Context, worker string, j repo.Job) {
	var in struct {
		Domain string `json:"domain"`
	}
	if err := json.Unmarshal(j.Payload, &in); err != nil || in.Domain == "" {
		p.errors.Add(1)
		p.problem("job %s: bad payload %s", j.ID, j.Payload)
		return
	}
	time.Sleep(time.Millisecond) // the "scrape"
	var (
		tr  repo.Transition
		err error
	)
	if flaky(in.Domain) && j.Attempts == 1 {
		tr, err = p.repos.Jobs.Fail(ctx, j.ID, worker, "connection reset by "+in.Domain)
		p.retries.Add(1)
	} else {
		res, _ := json.Marshal(result{Domain: in.Domain, Answer: answer(in.Domain)})
		tr, err = p.repos.Jobs.Complete(ctx, j.ID, worker, res)
		if err == nil {
			p.completed.Add(1)
			p.mu.Lock()
			p.done[j.ID]++
			p.mu.Unlock()
		}
	}
	if err != nil {
		p.errors.Add(1)
		p.problem("job %s: %v", j.ID, err)
		return
	}
	if tr.BatchFinished {
		p.finished.Add(1)
	}
}

type verdict struct {
	jobs, wrong, duplicates, lost int64
	status                        repo.BatchStatus
}

// verify reads every job of the batch back and checks it.
func (p *pipeline) verify(ctx context.Context) verdict {
	var v verdict
	b, err := p.repos.Batches.Get(ctx, p.tenant, p.batch.ID)
	if err != nil {
		p.problem("get batch: %v", err)
		v.lost = int64(p.batch.Total)
		return v
	}
	v.status = b.Status
	page := repo.Page{Limit: repo.MaxLimit}
	seen := 0
	for {
		jp, err := p.repos.Jobs.List(ctx, p.tenant, repo.JobFilter{BatchID: &b.ID}, page)
		if err != nil {
			p.problem("list jobs: %v", err)
			break
		}
		for _, j := range jp.Items {
			seen++
			var in, out result
			_ = json.Unmarshal(j.Payload, &in)
			if j.State != repo.JobStateSucceeded {
				v.lost++
				p.problem("job %s (%s) ended %s", j.ID, in.Domain, j.State)
				continue
			}
			v.jobs++
			if err := json.Unmarshal(j.Result, &out); err != nil || out.Domain != in.Domain || out.Answer != answer(in.Domain) {
				v.wrong++
				p.problem("job %s: result %s for %s", j.ID, j.Result, in.Domain)
			}
			p.mu.Lock()
			n := p.done[j.ID]
			p.mu.Unlock()
			if n != 1 {
				v.duplicates++
				p.problem("job %s completed %d times", j.ID, n)
			}
		}
		if jp.NextCursor == "" {
			break
		}
		page.Cursor = jp.NextCursor
	}
	if seen != b.Total || b.Succeeded != b.Total {
		v.lost += int64(b.Total - b.Succeeded)
		p.problem("batch: %d jobs listed, total %d, succeeded %d", seen, b.Total, b.Succeeded)
	}
	return v
}

// progress prints a progress line: redrawn in place on a terminal, one line
// a second otherwise (CI logs).
func progress(ps []*pipeline, total int) (stop func()) {
	fi, _ := os.Stdout.Stat()
	tty := fi != nil && fi.Mode()&os.ModeCharDevice != 0
	every := time.Second
	if tty {
		every = 100 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	line := func() string {
		var b strings.Builder
		for i, p := range ps {
			if i > 0 {
				b.WriteString("   ")
			}
			n := int(p.completed.Load())
			filled := n * 30 / max(total, 1)
			fmt.Fprintf(&b, "%-3s [%s%s] %4d/%d", p.driver, strings.Repeat("#", filled), strings.Repeat(".", 30-filled), n, total)
		}
		return b.String()
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Printf("\r%s\n\n", line())
				} else {
					fmt.Printf("%s\n\n", line())
				}
				return
			case <-t.C:
				if tty {
					fmt.Printf("\r%s", line())
				} else {
					fmt.Println(line())
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}
