package peer_test

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/peer"
	"github.com/scrapersky/poolsafe/internal/testdb"
)

//go:embed expected_failures.txt
var expectedFailures string

//go:embed all:testdata/shims
var shimFS embed.FS

// suite is an upstream test suite and how to point it at poolsafe.
type suite struct {
	name     string
	module   string   // module path, at the version go.mod selects
	newPath  string   // module path of the copy, "" to keep it
	packages []string // packages whose tests run
	rewrites []peer.Rewrite
	// notRun are top-level tests never started (go test -skip), each with
	// its reason: it would kill other clients' sessions, wait forever,
	// touch a port outside the stack, or need a fixture of upstream's CI.
	// This is not the expected-failure list: these say nothing about
	// poolsafe.
	notRun map[string]string
	// env is the suite's environment for one target.
	env func(tg target) []string
}

// target is where a suite runs: a driver behind poolsafe in a pool mode.
type target struct {
	driver, mode string
	url          string // poolsafe URL: the stack's URL plus driver and pool_mode
}

// dsn returns tg.url as a libpq key=value string.
func (tg target) dsn() string {
	u, err := url.Parse(tg.url)
	if err != nil {
		panic(err)
	}
	var b strings.Builder
	add := func(k, v string) {
		fmt.Fprintf(&b, "%s='%s' ", k, strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `'`, `\'`))
	}
	add("host", u.Hostname())
	add("port", u.Port())
	add("dbname", strings.TrimPrefix(u.Path, "/"))
	add("user", u.User.Username())
	if p, ok := u.User.Password(); ok {
		add("password", p)
	}
	q := u.Query()
	for _, k := range slices.Sorted(maps.Keys(q)) {
		add(k, q.Get(k))
	}
	return strings.TrimSpace(b.String())
}

var suites = []suite{
	{
		name:     "sqlx",
		module:   "github.com/jmoiron/sqlx",
		newPath:  "poolsafe.peer.invalid/github.com/jmoiron/sqlx",
		packages: []string{"./..."},
		rewrites: []peer.Rewrite{{
			Files:       "*_test.go",
			Calls:       map[string]string{"Connect": "peerConnect"},
			DropImports: []string{"github.com/go-sql-driver/mysql", "github.com/mattn/go-sqlite3"},
		}},
		env: func(tg target) []string {
			return []string{"SQLX_POSTGRES_DSN=" + tg.url, "SQLX_MYSQL_DSN=skip", "SQLX_SQLITE_DSN=skip"}
		},
	},
	{
		name:     "pgx-stdlib",
		module:   "github.com/jackc/pgx/v5",
		packages: []string{"./stdlib"},
		rewrites: []peer.Rewrite{
			{Files: "stdlib/sql_test.go", DeleteFuncs: []string{"openDB", "testWithAllQueryExecModes", "skipCockroachDB", "skipPostgreSQLVersionLessThan"}},
			{Files: "stdlib/*_test.go", Calls: map[string]string{"sql.Open": "peerSQLOpen", "stdlib.OpenDB": "peerOpenDB"}},
		},
		notRun: map[string]string{
			"TestCheckIdleConn": killsByPID,
		},
		env: func(tg target) []string { return []string{"PGX_TEST_DATABASE=" + tg.url} },
	},
	{
		name:    "pq",
		module:  "github.com/lib/pq",
		newPath: "poolsafe.peer.invalid/github.com/lib/pq",
		// The packages whose tests use a database. The others (oid, scram,
		// pqerror, internal/pqsql, internal/pqutil, …) test lib/pq's
		// internals without one: nothing poolsafe is in.
		packages: []string{".", "./hstore", "./internal/pqtest", "./internal/pqtime"},
		rewrites: []peer.Rewrite{
			{Files: "conn.go", Calls: map[string]string{"sql.Register": "peerRegister"}, RenameFuncs: map[string]string{"dial": "peerUpstreamDial"}},
			{Files: "as_go126.go", RenameFuncs: map[string]string{"As": "peerUpstreamAs"}},
			{Files: "*_test.go", Calls: map[string]string{"sql.Open": "peerSQLOpen"}},
			{Files: "internal/pqtest/pqtest.go", Calls: map[string]string{"sql.Open": "peerSQLOpen"}, DeleteFuncs: []string{"DB"}},
		},
		notRun: map[string]string{
			"ExampleListener":          "waits without end for a notification on a pq.Listener, which cannot connect here (lib/pq's own connector; see TestListener* in expected_failures.txt)",
			"TestSSLMode":              sslFixture,
			"TestSSLRootCA":            sslFixture,
			"TestSSLSNI":               sslFixture,
			"TestSSLVersion":           sslFixture,
			"ExampleRegisterTLSConfig": "connects to upstream's CI host \"postgres\" with a TLS config from pq.RegisterTLSConfig",
			"TestPing":                 killsByPID,
			"TestConnClose":            "dials PGHOST:PGPORT itself, with no driver, and hands the socket to lib/pq's internal conn; here PGPORT is upstream's PgBouncer marker 6432, where the system's own PgBouncer may listen",
		},
		// PGPORT=6432 is upstream's own switch for "behind PgBouncer"
		// (pqtest.SkipPgbouncer): the tests its authors know cannot work
		// through one skip themselves. No connection uses the port: the
		// suite's connections go through poolsafe to POOLSAFE_PEER_DSN, and
		// the copy's own connector reaches nothing (see the pq shim).
		env: func(tg target) []string { return []string{"POOLSAFE_PEER_DSN=" + tg.dsn(), "PGPORT=6432"} },
	},
}

// killsByPID is why tests that terminate a backend by PID after their
// transaction ended are not run: behind a transaction pooler that server
// connection by then serves another client (another test, the background
// load, anyone else using the pool), which pg_terminate_backend would kill.
const killsByPID = "terminates a backend by PID (pg_terminate_backend) outside the transaction that read it: behind the pooler that server connection then serves another client, which it would kill"

// sslFixture is why lib/pq's TLS tests are not run.
const sslFixture = "needs upstream's CI fixture: a TLS-enabled server with roles pqgossl and pqgosslcert, its certificates, and the host name \"postgres\""

// TestPeerSuites runs each upstream suite on both drivers behind the
// transaction pooler, under a checked background load, and holds every
// result against expected_failures.txt: a failure the list does not name
// fails, and so does a category a entry whose tests all passed (or a
// category c entry, in transaction mode) or any entry that matched no test.
// It prints one line per suite and target:
//
//	peer <suite> <driver>/<mode>: N passed, M failed, K expected
//
// counting tests without subtests (and tests that failed while all their
// subtests passed). Without the stack's URLs it skips, unless
// POOLSAFE_REQUIRE_DB=1; with them an unreachable database fails.
//
// Environment, all optional:
//
//	POOLSAFE_PEER_SUITES   sqlx,pgx-stdlib,pq (default: all)
//	POOLSAFE_PEER_DRIVERS  pgx,pq (default: both)
//	POOLSAFE_PEER_MODES    transaction (default); session and direct are
//	                       exploratory: the list is curated for transaction
//	                       mode, and lib/pq's suite in session mode currently
//	                       runs into its 5-minute timeout
//	POOLSAFE_PEER_LOGDIR   a directory for each run's go test -json output
//	POOLSAFE_PEER_SUMMARY  a file for the summary lines
func TestPeerSuites(t *testing.T) {
	urls := testdb.Get(t)
	names := make([]string, len(suites))
	for i, s := range suites {
		names[i] = s.name
	}
	list, err := peer.ParseExpected(expectedFailures, names)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-30*time.Second))
		defer cancel()
	}
	// The URLs are set: an unreachable database fails, it never skips.
	for _, db := range []string{urls.Tx, urls.Direct} {
		check, err := driverconf.Open(driverconf.Config{URL: db, MaxOpenConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		testdb.Ping(t, check.DB.DB)
		check.Close()
	}
	lock := lockPeerRuns(ctx, t, urls.Direct)
	defer lock()

	root, err := peer.RepoRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	modes := envList("POOLSAFE_PEER_MODES", "transaction")
	drivers := envList("POOLSAFE_PEER_DRIVERS", "pgx,pq")
	only := envList("POOLSAFE_PEER_SUITES", strings.Join(names, ","))
	var summary []string
	for _, s := range suites {
		if !slices.Contains(only, s.name) {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			dir, modPath := prepare(ctx, t, root, s)
			for _, mode := range modes {
				for _, drv := range drivers {
					t.Run(drv+"/"+mode, func(t *testing.T) {
						tg := target{driver: drv, mode: mode, url: poolsafeURL(t, urls, drv, mode)}
						rep := runSuite(ctx, t, s, tg, dir, modPath, list, urls.Direct)
						summary = append(summary, rep.Line())
					})
				}
			}
		})
	}
	if want := len(only) * len(modes) * len(drivers); len(summary) != want {
		t.Errorf("%d suite runs reported, want %d (suites %v × drivers %v × modes %v)", len(summary), want, only, drivers, modes)
	}
	out := strings.Join(summary, "\n") + "\n"
	fmt.Print(out)
	if path := os.Getenv("POOLSAFE_PEER_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
}

// prepare copies s's module into a temporary directory, rewritten and
// with its shims, and returns the directory and module path.
func prepare(ctx context.Context, t *testing.T, root string, s suite) (string, string) {
	t.Helper()
	from, version, err := peer.ModuleDir(ctx, root, s.module)
	if err != nil {
		t.Fatal(err)
	}
	shims := map[string][]byte{}
	base := "testdata/shims/" + s.name
	err = fs.WalkDir(shimFS, base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := shimFS.ReadFile(p)
		shims[strings.TrimPrefix(p, base+"/")] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), s.name)
	modPath := s.module
	if s.newPath != "" {
		modPath = s.newPath
	}
	spec := peer.CopySpec{From: from, OldPath: s.module, NewPath: s.newPath, Rewrites: s.rewrites, Shims: shims}
	if err := peer.Copy(spec, dir); err != nil {
		t.Fatalf("copy %s@%s: %v", s.module, version, err)
	}
	if err := peer.WriteGoMod(root, dir, from, s.newPath); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s@%s copied from %s to %s", s.module, version, from, dir)
	return dir, modPath
}

// runSuite runs s on tg under a background load and judges the results.
func runSuite(ctx context.Context, t *testing.T, s suite, tg target, dir, modPath string, list []peer.Entry, direct string) *peer.Report {
	t.Helper()
	dropLeftoverTables(ctx, t, direct, dir)
	if tg.mode == "transaction" {
		// Start on fresh server sessions, and leave fresh ones behind: the
		// suites leave temporary tables and SETs (lib/pq's TestIssue282
		// sets search_path to pg_catalog) on the server connections, where
		// every client of the pool would meet them.
		reconnectPool(ctx, t, tg.url)
		defer reconnectPool(ctx, t, tg.url)
	}

	loadDB, err := driverconf.Open(driverconf.Config{URL: tg.url, MaxOpenConns: 4, MaxIdleConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer loadDB.Close()
	load := peer.StartLoad(loadDB.DB.DB, 2, 2*time.Millisecond)
	directDB, err := driverconf.Open(driverconf.Config{URL: direct, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer directDB.Close()
	watchdog := peer.StartWatchdog(directDB.DB.DB, appName, 15*time.Second, 2*time.Second)

	var skip []string
	for _, name := range sortedNames(s.notRun) {
		skip = append(skip, regexp.QuoteMeta(name))
	}
	gt := peer.GoTest{
		Dir: dir, ModulePath: modPath, Packages: s.packages, Timeout: 5 * time.Minute,
		Env: peer.GoEnv(append(s.env(tg),
			"POOLSAFE_PEER_URL="+tg.url, "POOLSAFE_PEER_DRIVER="+tg.driver)...),
		Log: t.Logf,
	}
	if d := os.Getenv("POOLSAFE_PEER_LOGDIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		gt.JSONLog = filepath.Join(d, fmt.Sprintf("%s-%s-%s.json", s.name, tg.driver, tg.mode))
		os.Remove(gt.JSONLog)
	}
	if len(skip) > 0 {
		gt.Skip = "^(" + strings.Join(skip, "|") + ")$"
	}
	start := time.Now()
	results, err := gt.Run(ctx)
	lr := load.Stop()
	ended := watchdog.Stop()
	if err != nil {
		t.Fatalf("%s on %s/%s: %v", s.name, tg.driver, tg.mode, err)
	}
	rep := peer.Judge(s.name, tg.driver, tg.mode, results, list)
	t.Logf("%s (%s); load: %s", rep.Line(), time.Since(start).Round(time.Second), lr)
	for _, e := range ended {
		t.Logf("watchdog ended a transaction the suite left open: %s", e)
	}
	if len(rep.Skipped) > 0 {
		t.Logf("skipped (by the suite, or by its shim for a host other than 127.0.0.1): %s", strings.Join(rep.Skipped, ", "))
	}
	for _, name := range sortedNames(s.notRun) {
		t.Logf("not run: %s: %s", name, s.notRun[name])
	}
	for _, f := range rep.Failures {
		out := f.Output
		if len(out) > 15 {
			out = append([]string{"…"}, out[len(out)-15:]...)
		}
		t.Errorf("UNEXPECTED FAILURE %s (not in expected_failures.txt):\n\t%s", f.Name, strings.Join(out, "\n\t"))
	}
	for _, e := range rep.ExpectedPassed {
		t.Errorf("expected_failures.txt line %d passed on %s/%s: remove it or narrow it: %s", e.Line, tg.driver, tg.mode, e)
	}
	for _, e := range rep.Lucky {
		t.Logf("expected_failures.txt line %d (%s) passed this time on %s/%s: %s", e.Line, categoryName[e.Category], tg.driver, tg.mode, e)
	}
	for _, e := range rep.NotRun {
		t.Errorf("expected_failures.txt line %d matches no test that ran on %s/%s: %s", e.Line, tg.driver, tg.mode, e)
	}
	if len(rep.Passed) == 0 {
		t.Errorf("no test of %s passed: the suite did not really run", s.name)
	}
	if lr.Queries == 0 {
		t.Errorf("the background load ran no query")
	}
	if lr.Wrong > 0 || lr.Errors > 0 {
		t.Errorf("background load through the pooler: %s: %s", lr, strings.Join(lr.Samples, "; "))
	}
	return rep
}

// poolsafeURL returns the stack's URL for mode with driver and pool_mode set.
func poolsafeURL(t *testing.T, urls testdb.URLs, driver, mode string) string {
	t.Helper()
	raw := map[string]string{"transaction": urls.Tx, "session": urls.Session, "direct": urls.Direct}[mode]
	if raw == "" {
		t.Fatalf("POOLSAFE_PEER_MODES: unknown mode %q (transaction, session, direct)", mode)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("driver", driver)
	q.Set("pool_mode", mode)
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	return u.String()
}

// reconnectPool asks PgBouncer's admin console (database "pgbouncer" on the
// pooler of poolURL, as poolURL's user) to replace every server connection
// of poolURL's database as soon as it is released: RECONNECT, which no
// client notices. The local stack makes its user an admin_user.
func reconnectPool(ctx context.Context, t *testing.T, poolURL string) {
	t.Helper()
	u, err := url.Parse(poolURL)
	if err != nil {
		t.Fatal(err)
	}
	pool := strings.TrimPrefix(u.Path, "/")
	admin := url.URL{Scheme: "postgres", User: u.User, Host: u.Host, Path: "/pgbouncer", RawQuery: "sslmode=disable"}
	db, err := sql.Open("postgres", admin.String()) // lib/pq: the admin console speaks only the simple protocol
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "RECONNECT "+pool); err != nil {
		t.Errorf("PgBouncer admin console: RECONNECT %s: %v: the pool's server connections may keep the suites' session state", pool, err)
	}
}

// categoryName names the categories of expected_failures.txt in log lines.
var categoryName = map[peer.Category]string{
	peer.DriverAPI: "driver-specific API", peer.SessionState: "session state", peer.Deliberate: "deliberate poolsafe behaviour",
}

// appName is the application_name of the suites' connections, by which
// the [peer.Watchdog] finds their server sessions.
const appName = "poolsafe-peer"

// lockPeerRuns holds a session advisory lock on a direct connection, so
// that two runs of the peer suites against one database (two checkouts,
// two engineers) do not trip over each other's tables. It returns the
// release function.
func lockPeerRuns(ctx context.Context, t *testing.T, direct string) func() {
	t.Helper()
	db, err := driverconf.Open(driverconf.Config{URL: direct, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	testdb.Ping(t, db.DB.DB)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := conn.ExecContext(lctx, "SELECT pg_advisory_lock($1)", peerLockKey); err != nil {
		t.Fatalf("waiting for another run of the peer suites: %v", err)
	}
	return func() {
		conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", peerLockKey)
		conn.Close()
		db.Close()
	}
}

// peerLockKey is the advisory lock key of the peer suites ("peersuit").
const peerLockKey int64 = 0x7065657273756974

var createTable = regexp.MustCompile(`(?i)\bcreate\s+table\s+(?:if\s+not\s+exists\s+)?"?([a-z_][a-z0-9_]*)`)

// dropLeftoverTables drops the ordinary tables a suite's tests create, in
// case an earlier run died before its own cleanup: a table left behind
// makes the next run's CREATE TABLE fail and its rows doubled.
func dropLeftoverTables(ctx context.Context, t *testing.T, direct, dir string) {
	t.Helper()
	tables := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		for _, m := range createTable.FindAllSubmatch(b, -1) {
			tables[strings.ToLower(string(m[1]))] = true
		}
		return err
	})
	if len(tables) == 0 {
		return
	}
	db, err := driverconf.Open(driverconf.Config{URL: direct, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	for n := range tables {
		names = append(names, `public."`+n+`"`)
	}
	slices.Sort(names)
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(names, ", ")+" CASCADE"); err != nil {
		t.Fatalf("drop leftover tables: %v", err)
	}
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// envList reads a comma-separated list from the environment.
func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
