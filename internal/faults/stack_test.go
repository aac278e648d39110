package faults

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables the suite reads.
const (
	envRequireDB   = "POOLSAFE_REQUIRE_DB"
	envPGPort      = "POOLSAFE_FAULTS_PG_PORT"
	envBouncerPort = "POOLSAFE_FAULTS_BOUNCER_PORT"
)

// stack is the suite's own throwaway PostgreSQL + PgBouncer, managed with
// scripts/pgstack.sh on ports nobody else uses.
type stack struct {
	script      string   // absolute path of pgstack.sh
	env         []string // the script's environment
	pgPort      string
	bouncerPort string
	dir         string // the script's state directory

	directURL, sessionURL, txURL string
}

// startStack brings the suite's stack up and registers its teardown. It
// skips or fails as the package documentation says.
func startStack(t *testing.T) *stack {
	t.Helper()
	required := os.Getenv(envRequireDB) == "1"
	if testing.Short() {
		t.Skip("fault suite: skipped with -short (it starts its own PostgreSQL and PgBouncer)")
	}
	if !required && !binariesInstalled() {
		t.Skipf("SKIPPING FAULT SUITE: PostgreSQL or PgBouncer is not installed (set %s=1 to install and fail instead)", envRequireDB)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "pgstack.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{
		script:      script,
		pgPort:      envOr(envPGPort, "15532"),
		bouncerPort: envOr(envBouncerPort, "16532"),
	}
	s.dir = filepath.Join(os.TempDir(), "poolsafe-faults-"+s.pgPort)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// Neither the shared stack's settings nor the caller's libpq
		// variables may leak into ours.
		if k == "POOLSAFE_PG_PORT" || k == "POOLSAFE_BOUNCER_PORT" || k == "POOLSAFE_STACK_DIR" || strings.HasPrefix(k, "PG") {
			continue
		}
		s.env = append(s.env, kv)
	}
	s.env = append(s.env, "POOLSAFE_PG_PORT="+s.pgPort, "POOLSAFE_BOUNCER_PORT="+s.bouncerPort, "POOLSAFE_STACK_DIR="+s.dir)

	t.Cleanup(func() {
		if _, err := s.run(2*time.Minute, "down"); err != nil {
			t.Errorf("fault suite: stack down: %v", err)
		}
	})
	if _, err := s.run(3*time.Minute, "up"); err != nil {
		t.Fatalf("fault suite: cannot start its stack (ports %s/%s): %v", s.pgPort, s.bouncerPort, err)
	}
	out, err := s.run(time.Minute, "env")
	if err != nil {
		t.Fatalf("fault suite: stack env: %v", err)
	}
	vars := parseExports(out)
	s.directURL, s.sessionURL, s.txURL = vars["POOLSAFE_TEST_DIRECT_URL"], vars["POOLSAFE_TEST_SESSION_URL"], vars["POOLSAFE_TEST_TX_URL"]
	if s.directURL == "" || s.txURL == "" {
		t.Fatalf("fault suite: `pgstack.sh env` printed no POOLSAFE_TEST_DIRECT_URL / POOLSAFE_TEST_TX_URL:\n%s", out)
	}
	return s
}

// bouncerAddr is PgBouncer's address.
func (s *stack) bouncerAddr() string { return "127.0.0.1:" + s.bouncerPort }

// run runs one pgstack.sh command and returns its standard output. Output
// goes through files, not pipes: the servers the script starts must not
// hold a pipe the test waits on.
func (s *stack) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stdout, err := os.CreateTemp("", "pgstack-out-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(stdout.Name())
	defer stdout.Close()
	stderr, err := os.CreateTemp("", "pgstack-err-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()

	cmd := exec.CommandContext(ctx, "bash", append([]string{s.script}, args...)...)
	cmd.Dir = filepath.Dir(filepath.Dir(s.script))
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	if runErr != nil {
		if ee, ok := runErr.(*exec.ExitError); ok && ee.ExitCode() == 2 {
			return string(out), fmt.Errorf("pgstack.sh does not know %q (usage error): %s", strings.Join(args, " "), bytes.TrimSpace(errOut))
		}
		return string(out), fmt.Errorf("pgstack.sh %s: %v: %s", strings.Join(args, " "), runErr, lastLines(errOut, 15))
	}
	return string(out), nil
}

// check runs `pgstack.sh check`: nil when PgBouncer has run without
// crashing or restarting since up/start-bouncer.
func (s *stack) check() error {
	_, err := s.run(time.Minute, "check")
	return err
}

// rearm brings a pooler back after a failed check and makes check report
// on what happens from now on: start-bouncer starts a dead PgBouncer, and
// up (idempotent) records the running one and the log position check reads
// from.
func (s *stack) rearm() error {
	if _, err := s.run(2*time.Minute, "start-bouncer"); err != nil {
		return err
	}
	_, err := s.run(3*time.Minute, "up")
	return err
}

// durableCommits makes every commit in the suite's database durable
// against a PostgreSQL crash. The stack runs with synchronous_commit=off
// for speed, and then `restart-pg immediate` forgets commits it has already
// acknowledged: a job completed (and its batch finished) before the crash
// is running again after it. No driver can prevent that, and the crash
// scenario is about the drivers. So the database gets synchronous_commit=on
// (fsync=off stays: the operating system survives a PostgreSQL crash), and
// PgBouncer's admin RECONNECT replaces the server connections that were
// opened before.
func (s *stack) durableCommits(ctx context.Context, direct *sql.DB) error {
	u, err := url.Parse(s.directURL)
	if err != nil {
		return err
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if _, err := direct.ExecContext(ctx, `ALTER DATABASE `+pgx.Identifier{dbName}.Sanitize()+` SET synchronous_commit = on`); err != nil {
		return err
	}
	t, err := url.Parse(s.txURL)
	if err != nil {
		return err
	}
	t.Path = "/pgbouncer" // the admin console
	admin, err := pgx.Connect(ctx, t.String())
	if err != nil {
		return fmt.Errorf("PgBouncer admin console: %w", err)
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "RECONNECT")
	return err
}

// parseExports reads `export NAME='value'` lines.
func parseExports(out string) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vars[k] = strings.Trim(v, `'"`)
	}
	return vars
}

// binariesInstalled reports whether PostgreSQL's server binaries and
// PgBouncer are installed where pgstack.sh looks for them.
func binariesInstalled() bool {
	pg := false
	if dir := os.Getenv("POOLSAFE_PG_BINDIR"); dir != "" {
		pg = isExec(filepath.Join(dir, "initdb"))
	} else if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		pg = true
	}
	_, err := exec.LookPath("pgbouncer")
	return pg && (err == nil || isExec("/usr/sbin/pgbouncer"))
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
