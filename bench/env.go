package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// schema is where every measurement works: repo's migrations, the minimal
// queue table of the anchor, the COPY target. The pgbench scripts name it.
const schema = "poolsafe_bench"

// env is the stack the benchmarks run against.
type env struct {
	txURL, directURL string
	direct           *sqladapter.DB // for setup and counts, never measured
	pgbench          string         // path of pgbench
	admin            *sql.DB        // PgBouncer's admin console (SHOW STATS)
	poolDB           string         // the pooler database of txURL, as SHOW STATS names it
	cpu              *cpuMeter
	statsSchema      string // where pg_stat_statements is (statsOn)
}

func newEnv(ctx context.Context) (*env, error) {
	e := &env{txURL: os.Getenv("POOLSAFE_TEST_TX_URL"), directURL: os.Getenv("POOLSAFE_TEST_DIRECT_URL")}
	if e.txURL == "" || e.directURL == "" {
		return nil, fmt.Errorf("POOLSAFE_TEST_TX_URL and POOLSAFE_TEST_DIRECT_URL must be set: eval \"$(bash scripts/pgstack.sh env)\" (make bench does)")
	}
	var err error
	e.direct, err = driverconf.Open(driverconf.Config{URL: e.directURL, PoolMode: driverconf.Direct, MaxOpenConns: 4})
	if err != nil {
		return nil, err
	}
	if err := e.direct.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("direct URL: %w", err)
	}
	e.pgbench, err = findPgbench()
	if err != nil {
		return nil, err
	}
	e.admin, e.poolDB, err = openAdmin(e.txURL)
	if err != nil {
		return nil, err
	}
	e.cpu = newCPUMeter(ctx, e)
	return e, nil
}

func (e *env) close() {
	e.direct.Close()
	if e.admin != nil {
		e.admin.Close()
	}
}

// poolsafe opens the project's handle on drv through the transaction pool.
func (e *env) poolsafe(drv driverconf.Driver, conns int) (*sqladapter.DB, error) {
	return driverconf.Open(driverconf.Config{URL: e.txURL, DirectURL: e.directURL, Driver: drv,
		PoolMode: driverconf.Transaction, MaxOpenConns: conns, MaxIdleConns: conns})
}

// exec runs statements on the direct connection.
func (e *env) exec(ctx context.Context, stmts ...string) error {
	for _, s := range stmts {
		if _, err := e.direct.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%.60s…: %w", s, err)
		}
	}
	return nil
}

func (e *env) count(ctx context.Context, query string) (int64, error) {
	var n int64
	err := e.direct.GetContext(ctx, &n, query)
	return n, err
}

func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(m) == 0 {
		return "", fmt.Errorf("pgbench not found (it comes with the PostgreSQL server packages: make setup)")
	}
	slices.Sort(m)
	return m[len(m)-1], nil
}

// pgbenchResult is what one pgbench run printed.
type pgbenchResult struct {
	xacts int64
	tps   float64       // without initial connection time
	cpu   time.Duration // pgbench's own CPU time
}

// runPgbench runs a script through the transaction pool with clients
// clients for d, with the -D variables given.
func (e *env) runPgbench(ctx context.Context, script string, clients int, d time.Duration, vars ...string) (pgbenchResult, error) {
	secs := max(int(math.Round(d.Seconds())), 1)
	args := []string{"-n", "-M", "extended", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
		"-T", strconv.Itoa(secs)}
	for _, v := range vars {
		args = append(args, "-D", v)
	}
	args = append(args, "-f", script, e.txURL)
	cmd := exec.CommandContext(ctx, e.pgbench, args...)
	// libpq settings of the caller must not redirect pgbench.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return pgbenchResult{}, fmt.Errorf("pgbench %s: %v\n%s", script, err, out)
	}
	r := pgbenchResult{cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
			r.xacts, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "tps = "); ok {
			r.tps, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
		if strings.Contains(line, "number of failed transactions: ") && !strings.Contains(line, ": 0 ") {
			return r, fmt.Errorf("pgbench %s: %s\n%s", script, line, out)
		}
	}
	if r.tps == 0 {
		return r, fmt.Errorf("pgbench %s: no tps in its output:\n%s", script, out)
	}
	return r, nil
}

// poolStats is PgBouncer's SHOW STATS row for the transaction pool.
type poolStats struct {
	xacts, queries, recv, sent int64
	queryTime, waitTime        int64 // µs
}

func openAdmin(txURL string) (*sql.DB, string, error) {
	// The admin console: same host, port and user, database "pgbouncer",
	// simple protocol only.
	u := strings.Replace(txURL, "/"+dbName(txURL)+"?", "/pgbouncer?", 1)
	db, err := sql.Open("pgx", u+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return nil, "", err
	}
	db.SetMaxOpenConns(1)
	return db, dbName(txURL), nil
}

func dbName(u string) string {
	s := u[strings.LastIndex(u, "/")+1:]
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *env) poolStats(ctx context.Context) (poolStats, error) {
	rows, err := e.admin.QueryContext(ctx, "SHOW STATS")
	if err != nil {
		return poolStats{}, fmt.Errorf("PgBouncer SHOW STATS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return poolStats{}, err
		}
		m := map[string]int64{}
		var db string
		for i, c := range cols {
			s := fmt.Sprint(vals[i])
			if b, ok := vals[i].([]byte); ok {
				s = string(b)
			}
			if c == "database" {
				db = s
				continue
			}
			m[c], _ = strconv.ParseInt(s, 10, 64)
		}
		if db == e.poolDB {
			return poolStats{xacts: m["total_xact_count"], queries: m["total_query_count"], recv: m["total_received"],
				sent: m["total_sent"], queryTime: m["total_query_time"], waitTime: m["total_wait_time"]}, rows.Err()
		}
	}
	return poolStats{}, fmt.Errorf("PgBouncer SHOW STATS: no row for %s", e.poolDB)
}

func (s poolStats) sub(o poolStats) poolStats {
	return poolStats{s.xacts - o.xacts, s.queries - o.queries, s.recv - o.recv, s.sent - o.sent,
		s.queryTime - o.queryTime, s.waitTime - o.waitTime}
}

// machine samples the machine's load while the benchmarks run.
type machine struct {
	cores    int
	loads    []float64 // 1-minute load average at each sample
	busy     []float64 // fraction of CPU time not idle between samples
	lastStat [2]uint64 // busy, total jiffies at the last sample
}

func newMachine() *machine {
	m := &machine{cores: runtime.NumCPU()}
	m.lastStat = cpuJiffies()
	return m
}

// sample records the load now and the CPU busy fraction since the last sample.
func (m *machine) sample() {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				m.loads = append(m.loads, v)
			}
		}
	}
	cur := cpuJiffies()
	if cur[1] < m.lastStat[1]+100 {
		return // under a second of one core since the last sample: too short to say
	}
	m.busy = append(m.busy, float64(cur[0]-m.lastStat[0])/float64(cur[1]-m.lastStat[1]))
	m.lastStat = cur
}

// cpuJiffies reads the machine's busy and total CPU time from /proc/stat.
func cpuJiffies() [2]uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return [2]uint64{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var total, idle uint64
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return [2]uint64{total - idle, total}
}

func (m *machine) String() string {
	if len(m.loads) == 0 {
		return fmt.Sprintf("%d cores", m.cores)
	}
	l, b := summarize(m.loads), summarize(m.busy)
	return fmt.Sprintf("%d cores; 1-minute load average %.1f (%.1f–%.1f) over %d samples; CPU busy %.0f%% (%.0f–%.0f%%)",
		m.cores, l.median, l.min, l.max, len(m.loads), 100*b.median, 100*b.min, 100*b.max)
}

// stat is a median with its range.
type stat struct{ median, min, max float64 }

func summarize(v []float64) stat {
	if len(v) == 0 {
		return stat{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{med, s[0], s[len(s)-1]}
}

func (s stat) ratio() string {
	if math.IsNaN(s.median) {
		return "–"
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.median, s.min, s.max)
}

func (s stat) num(format string) string {
	if math.IsNaN(s.median) {
		return "–"
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.median, s.min, s.max)
}

// setup creates the bench schema afresh: the project's migrations and the
// anchors' tables.
func (e *env) setup(ctx context.Context) error {
	if err := e.exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return err
	}
	cfg := driverconf.Config{URL: e.txURL, DirectURL: e.directURL, PoolMode: driverconf.Transaction}
	if err := repo.Migrate(ctx, cfg, repo.WithSchema(schema)); err != nil {
		return err
	}
	return e.exec(ctx, minQueueDDL, copyTargetDDL)
}

// cpuMeter reads the CPU time of the stack's processes: PostgreSQL (the
// postmaster, its live children and the children it reaped) and PgBouncer.
type cpuMeter struct {
	postmaster, bouncer int
}

// cpuSample is CPU time used so far, by part.
type cpuSample struct {
	server, pooler, client time.Duration
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{s.server - o.server, s.pooler - o.pooler, s.client - o.client}
}

func newCPUMeter(ctx context.Context, e *env) *cpuMeter {
	m := &cpuMeter{}
	var backend int
	if err := e.direct.GetContext(ctx, &backend, "SELECT pg_backend_pid()"); err == nil {
		if f := procStat(backend); len(f) > 3 {
			m.postmaster, _ = strconv.Atoi(f[3])
		}
	}
	dir := os.Getenv("POOLSAFE_STACK_DIR")
	if dir == "" {
		port := "15432"
		if u, err := url.Parse(e.directURL); err == nil && u.Port() != "" {
			port = u.Port()
		}
		tmp := os.Getenv("TMPDIR")
		if tmp == "" {
			tmp = "/tmp"
		}
		dir = filepath.Join(tmp, "poolsafe-stack-"+port)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pgbouncer.pid")); err == nil {
		m.bouncer, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return m
}

// sample reads the servers' CPU time; client is the caller's to fill.
func (m *cpuMeter) sample() cpuSample {
	var s cpuSample
	if m.postmaster > 0 {
		f := procStat(m.postmaster)
		s.server = ticks(f, 13) + ticks(f, 14) + ticks(f, 15) + ticks(f, 16)
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if f := procStat(pid); len(f) > 16 && f[3] == strconv.Itoa(m.postmaster) {
				s.server += ticks(f, 13) + ticks(f, 14)
			}
		}
	}
	if m.bouncer > 0 {
		f := procStat(m.bouncer)
		s.pooler = ticks(f, 13) + ticks(f, 14)
	}
	return s
}

// procStat returns the fields of /proc/pid/stat, the command's counted as one.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return append([]string{s[:strings.IndexByte(s, ' ')], "comm"}, strings.Fields(s[i+1:])...)
}

// ticks converts field i of a /proc stat (clock ticks, 100 a second) to a duration.
func ticks(f []string, i int) time.Duration {
	if len(f) <= i {
		return 0
	}
	v, _ := strconv.ParseInt(f[i], 10, 64)
	return time.Duration(v) * 10 * time.Millisecond
}

// selfCPU is this process's CPU time, from the kernel's per-thread
// runtime in nanoseconds (CLOCK_PROCESS_CPUTIME_ID). getrusage's user and
// system times are split from it by tick samples and kept monotonic
// separately, which blurs the CPU time of a chunk of a few milliseconds.
func selfCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
