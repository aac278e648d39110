package main

import (
	"fmt"
	"strings"
	"time"
)

type report struct {
	opts    options
	machine *machine
	started time.Time
	queue   *queueResult
	bulk    *bulkResult
	adapter *adapterResult
	demo    *demoResult
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "# Benchmark report\n\n")
	goals, what := "", " (what `make bench` runs)"
	if len(o.goals) < 4 {
		what = ""
		var g []string
		for _, name := range []string{"queue", "adapter", "bulk", "demo"} {
			if o.goals[name] {
				g = append(g, name)
			}
		}
		goals = " -goals " + strings.Join(g, ",")
	}
	fmt.Fprintf(&b, "`go run ./bench -rounds %d -benchtime %s%s`%s, %s, %s.\n\n",
		o.rounds, o.runTime, goals, what, r.started.UTC().Format("2006-01-02 15:04 UTC"), time.Since(r.started).Round(time.Second))
	if o.smoke {
		b.WriteString("**Smoke run** (`-benchtime Nx`): every measurement ran once, briefly; the figures below are not results.\n\n")
	}
	fmt.Fprintf(&b, "Machine: %s. Stack: `scripts/pgstack.sh` (PostgreSQL 15, PgBouncer 1.18, transaction pool of 2 server connections), everything on 127.0.0.1.\n\n", r.machine)
	b.WriteString("Absolute numbers on a shared machine are noise: each figure that matters is a **ratio to an anchor measured in the same round**, " +
		"rounds interleaved (each contender takes every position in turn); a ratio is given as its median and, in brackets, its range over the rounds.\n\n")
	if r.queue != nil {
		r.queueTable(&b)
	}
	if r.bulk != nil {
		r.bulkTable(&b)
	}
	r.adapterSection(&b)
	r.demoSection(&b)
	return b.String()
}

func (r *report) queueTable(b *strings.Builder) {
	q := r.queue
	fmt.Fprintf(b, "## Goal 1: the job queue through the transaction pool\n\n")
	fmt.Fprintf(b, "%d workers (pgbench clients), claims of %d jobs, %d jobs queued (in batches of %d; the anchor's %d, today's fewer) before each run, %s per run. "+
		"The project's loop is `repo.Jobs.Next` (report the last outcomes, claim the next jobs, one statement) with a 30 s lease, "+
		"batch accounting (every job belongs to a batch) and retries (one job in %d fails its first attempt and comes back after the retry backoff; "+
		"only completions count). Statements, transactions and pool wait come from PgBouncer's `SHOW STATS`; CPU is the stack's processes' "+
		"(PostgreSQL with its children, PgBouncer) and the client's own, per job.\n\n",
		q.workers, q.claim, q.fill, batchSize, q.fillMin, r.opts.runTime, q.failEvery)
	b.WriteString("| contender | jobs/s | × anchor | × today | statements/job | wait share | CPU µs/job: server / pooler / client |\n|---|---|---|---|---|---|---|\n")
	for _, name := range queueContenders {
		runs := q.runs[name]
		if len(runs) == 0 {
			continue
		}
		var rates, stm, wait, sv, pl, cl, ra, rt []float64
		for i, run := range runs {
			rates = append(rates, run.rate())
			s, _ := run.perJob()
			stm = append(stm, s)
			wait = append(wait, run.waitShare())
			a, p, c := run.cpuPerJob()
			sv, pl, cl = append(sv, a), append(pl, p), append(cl, c)
			if an := q.runs[qAnchor]; len(an) > i {
				ra = append(ra, run.rate()/an[i].rate())
			}
			if td := q.runs[qToday]; len(td) > i {
				rt = append(rt, run.rate()/td[i].rate())
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %.0f / %.0f / %.0f |\n", queueLabel[name], summarize(rates).num("%.0f"),
			summarize(ra).ratio(), summarize(rt).ratio(), summarize(stm).num("%.3f"), summarize(wait).num("%.2f"),
			summarize(sv).median, summarize(pl).median, summarize(cl).median)
	}
	b.WriteString("\nWait share: PgBouncer's total_wait_time / total_query_time, the part of a statement's time in the pool spent waiting for a server connection.\n\n")
	b.WriteString("Reproduce: `go run ./bench -goals queue` (it creates the schema `" + schema + "`, fills the queues before each run and runs these); the anchors by hand, after a fill:\n\n")
	fmt.Fprintf(b, "    pgbench -n -M extended -c %d -j 2 -T %d -D n=%d -f bench/queue_min.sql \"$POOLSAFE_TEST_TX_URL\"\n", q.workers, int(r.opts.runTime.Seconds()), q.claim)
	fmt.Fprintf(b, "    pgbench -n -M extended -c %d -j 2 -T %d -D n=1 -D lease=30000 -D result='{\"ok\":1}' -f bench/queue_today.sql \"$POOLSAFE_TEST_TX_URL\"\n", q.workers, int(r.opts.runTime.Seconds()))
	fmt.Fprintf(b, "    pgbench -n -M extended -c %d -j 2 -T %d -D n=%d -D ids='{}' -D rs='{}' -D es='{}' -f bench/queue_next.sql \"$POOLSAFE_TEST_TX_URL\"\n\n", q.workers, int(r.opts.runTime.Seconds()), q.claim)
	r.breakdownTable(b)
	r.queueVerdict(b)
}

// breakdownTable shows where jobs_next's time went, from pg_stat_statements.
func (r *report) breakdownTable(b *strings.Builder) {
	q := r.queue
	if !q.stats {
		b.WriteString("Where `jobs_next`'s time goes: not measured (the server does not track nested statements: `scripts/pgstack.sh` starts PostgreSQL with `pg_stat_statements.track = all`).\n\n")
		return
	}
	b.WriteString("Where the time of a `jobs_next` call goes, from `pg_stat_statements` (statements inside the function tracked): each part's share of the calls' execution time on the server. ")
	b.WriteString("Execution time, not CPU: a statement waiting for a lock counts, so \"batch lock\" is mostly the wait for the batch row that the other server connection's call holds until it commits (every worker finishes jobs of the same batch). ")
	b.WriteString("\"Rest\" is the function's own work and the statement around it.\n\n")
	b.WriteString("| contender | ms per call | claim | finish | batch lock | batch update | claimed rows | rest |\n|---|---|---|---|---|---|---|---|\n")
	for _, name := range queueContenders {
		var per []float64
		shares := map[string][]float64{}
		for _, run := range q.runs[name] {
			if run.parts.calls == 0 {
				continue
			}
			per = append(per, run.parts.perCall)
			rest := 1.0
			for _, p := range nextParts {
				shares[p.name] = append(shares[p.name], run.parts.share[p.name])
				rest -= run.parts.share[p.name]
			}
			shares["rest"] = append(shares["rest"], rest)
		}
		if len(per) == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %s |", queueLabel[name], summarize(per).num("%.2f"))
		for _, p := range append(nextParts, struct{ name, prefix string }{"rest", ""}) {
			fmt.Fprintf(b, " %.0f%% |", 100*summarize(shares[p.name]).median)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func (r *report) queueVerdict(b *strings.Builder) {
	q := r.queue
	// anchored is a contender's rate over the anchor's in the same round.
	anchored := func(name string) (stat, bool) {
		var v []float64
		for i, run := range q.runs[name] {
			if len(q.runs[qAnchor]) > i {
				v = append(v, run.rate()/q.runs[qAnchor][i].rate())
			}
		}
		return summarize(v), len(v) > 0
	}
	// median of a contender's per-run figure.
	median := func(name string, f func(queueRun) float64) float64 {
		var v []float64
		for _, run := range q.runs[name] {
			v = append(v, f(run))
		}
		return summarize(v).median
	}
	met := true
	for _, name := range []string{qPGX, qPQ} {
		var ra, rt []float64
		for i, run := range q.runs[name] {
			if len(q.runs[qAnchor]) > i && len(q.runs[qToday]) > i {
				ra = append(ra, run.rate()/q.runs[qAnchor][i].rate())
				rt = append(rt, run.rate()/q.runs[qToday][i].rate())
			}
		}
		if len(ra) == 0 {
			continue
		}
		a, t := summarize(ra), summarize(rt)
		met = met && a.median >= 0.7
		fmt.Fprintf(b, "- %s: %s of the anchor (goal ≥ 0.7×: %s), %s of today's statements (goal ≥ 5×: %s).\n",
			queueLabel[name], a.ratio(), verdict(a.median >= 0.7), t.ratio(), verdict(t.median >= 5))
	}
	b.WriteString("\n")
	next, okNext := anchored(qNextSQL)
	loose, okLoose := anchored(qLoose)
	loopNoList, okLoopNoList := anchored(qNoList)
	nextNoList, okNextNoList := anchored(qNextNoList)
	if met || !okNext {
		return
	}
	b.WriteString("What the gap to 0.7× is made of in this run, and what would close it (not done; `docs/design.md`, \"The job queue\", has the details):\n\n")
	client := func(run queueRun) float64 { _, _, c := run.cpuPerJob(); return c }
	fmt.Fprintf(b, "- **The Go client.** The same statement with pgbench as the client reaches %s of the anchor: same statement, same server. "+
		"The Go loops add database/sql, the driver, decoding twenty 21-column rows per call, the scheduler and the socket calls — "+
		"%.0f µs (pgx) and %.0f µs (lib/pq) of client CPU per job against pgbench's %.0f, on the %d cores the server and the pooler use too. "+
		"Workers on cores of their own, or a client that decodes less per job, would recover part of it.\n",
		next.ratio(), median(qPGX, client), median(qPQ, client), median(qNextSQL, client), r.machine.cores)
	if okLoopNoList && okNextNoList {
		fmt.Fprintf(b, "- **Index maintenance.** Every claim and finish changes an indexed column, so no update of a job is HOT and each inserts into every index of `jobs`. "+
			"Without `%s` (the index of `Jobs.List`) the statement with pgbench reaches %s and the pgx loop %s. "+
			"The index stays (without it, listing a tenant's jobs scans them); a narrow queue table holding only what claims and finishes change, "+
			"apart from the rows `List` reads, would remove most of this cost.\n", listIndex, nextNoList.ratio(), loopNoList.ratio())
	}
	if okLoose {
		fmt.Fprintf(b, "- **Batch accounting.** The same jobs without a batch run at %s: their updates also skip `jobs_batch_state_idx`, "+
			"and their calls the batch row. Counting finished jobs into per-connection tally rows, and locking the batch row only in the batch's tail, "+
			"would remove the wait for the batch row (\"batch lock\" in the breakdown above) and most of the batch work; the tail test has to keep "+
			"the exactly-once finish (`docs/design.md` says why \"no queued job remains\" alone does not).\n", loose.ratio())
	}
	b.WriteString("\n")
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

func (r *report) bulkTable(b *strings.Builder) {
	br := r.bulk
	fmt.Fprintf(b, "## Goal 3: bulk upsert of %d new domains\n\n", br.names)
	b.WriteString("Through the transaction pool, a fresh tenant and an emptied table for each measurement. COPY is the driver's own (pgx `CopyFrom`, " +
		"lib/pq `COPY … FROM STDIN` in a transaction) of the same rows straight into `domains`; `BulkUpsert` normalises the names, " +
		"reads the names that exist, then COPYs the others straight into `domains` under a savepoint (a unique violation from a concurrent call falls back to `INSERT … ON CONFLICT DO NOTHING`), returning every id; " +
		"today's statement is the one `BulkUpsert` sent before (the names as one array, `ON CONFLICT DO UPDATE`).\n\n")
	b.WriteString("| driver | COPY (anchor) | BulkUpsert | × COPY | today's statement | × COPY | BulkUpsert again (all exist) | rows rewritten by it |\n|---|---|---|---|---|---|---|---|\n")
	for _, drv := range []string{"pgx", "pq"} {
		t := br.times[drv]
		if t == nil {
			continue
		}
		ms := func(ds []time.Duration) stat {
			v := make([]float64, len(ds))
			for i, d := range ds {
				v[i] = float64(d.Microseconds()) / 1000
			}
			return summarize(v)
		}
		ratio := func(name string) stat {
			var v []float64
			for i, d := range t[name] {
				if len(t[bCopy]) > i {
					v = append(v, d.Seconds()/t[bCopy][i].Seconds())
				}
			}
			return summarize(v)
		}
		fmt.Fprintf(b, "| %s | %s ms | %s ms | %s | %s ms | %s | %s ms | %d |\n", drv, ms(t[bCopy]).num("%.0f"), ms(t[bUpsert]).num("%.0f"),
			ratio(bUpsert).ratio(), ms(t[bToday]).num("%.0f"), ratio(bToday).ratio(), ms(t[bReWrite]).num("%.0f"), br.rewritten[drv])
	}
	b.WriteString("\nReproduce: `go run ./bench -goals bulk`.\n\n")
	for _, drv := range []string{"pgx", "pq"} {
		var v []float64
		for i, d := range br.times[drv][bUpsert] {
			v = append(v, d.Seconds()/br.times[drv][bCopy][i].Seconds())
		}
		if len(v) > 0 {
			s := summarize(v)
			fmt.Fprintf(b, "- %s: BulkUpsert %s of COPY (goal ≤ 1.2×: %s); re-upserting rewrote %d rows (goal 0: %s).\n",
				drv, s.ratio(), verdict(s.median <= 1.2), br.rewritten[drv], verdict(br.rewritten[drv] == 0))
		}
	}
	b.WriteString("\n")
}

func (r *report) adapterSection(b *strings.Builder) {
	b.WriteString("## Goal 2: the adapter at the raw driver's cost\n\n")
	a := r.adapter
	if a == nil {
		b.WriteString("Not measured in this run (`-goals` without `adapter`).\n\n")
		return
	}
	var n8, nr []float64
	for key, runs := range a.runs {
		for _, run := range runs["raw"] {
			if strings.HasSuffix(key, shapeInt8) {
				n8 = append(n8, float64(run.queries))
			} else {
				nr = append(nr, float64(run.queries))
			}
		}
	}
	more := ""
	if a.minTime > 0 {
		more = " and more until it has taken " + a.minTime.String()
	}
	fmt.Fprintf(b, "Client CPU time (this process's, GC included; the three clients alternate in chunks of %d queries of one int8 or %d of 100 rows, "+
		"at least 50 chunks each per measurement%s, so that load drifts cancel) "+
		"and allocations per query, a median of %.0f queries of one int8 or %.0f of 100 rows per client and measurement, "+
		"one connection straight to PostgreSQL: the raw driver configured as driverconf configures it (pgx: exec mode, caches off; lib/pq: "+
		"`binary_parameters=yes`; database/sql's pool settings those of `driverconf.Open`) against `driverconf.Open`'s handle, "+
		"every column scanned (int64, string, time.Time). The control is a second handle of the raw driver, measured in the same rotation: "+
		"its ratio to the first is what the measurement gives two identical clients, the precision of the others. "+
		"The raw driver's CPU is the mean of its two handles'.\n\n",
		max(a.queries[shapeInt8]/50, 1), max(a.queries[shapeRows]/50, 1), more, summarize(n8).median, summarize(nr).median)
	b.WriteString("| driver | query | raw: CPU µs / allocs per query | poolsafe: CPU µs / allocs per query | CPU × raw | control: second raw handle × first | allocs × raw |\n|---|---|---|---|---|---|---|\n")
	var verdicts, unmet []string
	for _, drv := range []string{"pgx", "pq"} {
		for _, shape := range []string{shapeInt8, shapeRows} {
			runs := a.runs[drv+" "+shape]
			if runs == nil {
				continue
			}
			var rc, ra, pc, pa, cr, ccr, ar []float64
			for i, raw := range runs["raw"] {
				ps, ctl := runs["poolsafe"][i], runs["control"][i]
				rc, ra, pc, pa = append(rc, raw.cpu), append(ra, raw.allocs), append(pc, ps.cpu), append(pa, ps.allocs)
				// The anchor is the raw driver's two handles together: half
				// the noise of one.
				cr, ccr, ar = append(cr, ps.cpu/((raw.cpu+ctl.cpu)/2)), append(ccr, ctl.cpu/raw.cpu), append(ar, ps.allocs/raw.allocs)
			}
			c, cc, al := summarize(cr), summarize(ccr), summarize(ar)
			for i, ctl := range runs["control"] {
				rc[i] = (rc[i] + ctl.cpu) / 2
			}
			fmt.Fprintf(b, "| %s | `%s` | %.1f / %.0f | %.1f / %.0f | %s | %s | %s |\n", drv, shape, summarize(rc).median, summarize(ra).median,
				summarize(pc).median, summarize(pa).median, c.ratio(), cc.ratio(), al.ratio())
			verdicts = append(verdicts, fmt.Sprintf("- %s, %s: CPU %s (goal ≤ 1.03×: %s), allocations %s (goal ≤ 1.05×: %s).\n",
				drv, shape, c.ratio(), verdict(c.median <= 1.03), al.ratio(), verdict(al.median <= 1.05)))
			if c.median > 1.03 {
				unmet = append(unmet, fmt.Sprintf("%s on %s: %.1f µs more CPU per query than the raw driver (%s); the control, two identical clients, differed by %s",
					drv, shape, summarize(pc).median-summarize(rc).median, c.ratio(), cc.ratio()))
			}
		}
	}
	b.WriteString("\nReproduce: `go run ./bench -goals adapter`; the per-query Go benchmarks: " +
		"`go test ./sqladapter ./driverconf -run '^$' -bench . -benchmem` (make bench runs them after the report).\n\n")
	for _, v := range verdicts {
		b.WriteString(v)
	}
	if len(unmet) > 0 {
		b.WriteString("\nWhat the CPU gap is made of where it is not met (" + strings.Join(unmet, "; ") + "): " + adapterGap + "\n")
	}
	b.WriteString("\n")
}

// adapterGap is what is known of the adapter's CPU above the raw driver's
// from measurements outside the report's run (docs/design.md, "The
// adapter's cost", has the figures and the commands).
const adapterGap = "the adapter's own work is about 1 µs per 100-row query measured without the network " +
	"(`go test ./sqladapter -run '^$' -bench 'WrapperNoDB/rows100' -benchmem`: an in-memory driver answering at once, raw and wrapped), " +
	"under 1% of a lib/pq query's CPU here, and a CPU profile of this goal (`-cpuprofile`; each chunk is labelled `run=<driver> <client> <query>`) " +
	"puts the adapter's and its socket wrapper's own frames under 2% of poolsafe's samples. " +
	"The rest is within what the measurement gives two identical clients: the control column. " +
	"What would close it is a measurement precise to 1%, not a change to the adapter: on this shared 2-core machine, " +
	"where the client, the server and the pooler share the cores, the control itself has been off by up to 6%."
