package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/internal/testdb"
)

// binary builds the command once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "poolsafe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBin runs the binary and returns its stdout, stderr and exit code.
func runBin(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestExplain(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		name, url, secret string
		want              []string
	}{
		{"seed URL", "postgres://app:s3cretpw@db.internal:6432/app?raw_sql=true&no_prepare=true&statement_cache_size=0", "s3cretpw",
			[]string{"pool mode:  transaction (from the URL: raw_sql=true, no_prepare=true, statement_cache_size=0)",
				"removed raw_sql=true: pool-mode hint", "statement and description caches off", "prepare:    client-side"}},
		{"Prisma URL", "postgresql://app:prismapw@pooler.example.com:5432/app?pgbouncer=true&connection_limit=5&search_path=tenant1", "prismapw",
			[]string{"(from the URL: pgbouncer=true)", "moved connection_limit=5 to Config.MaxOpenConns", "pool:       MaxOpenConns 5",
				"search_path=tenant1: set_config(…, true) after BEGIN in every transaction", "ALTER ROLE … SET"}},
		{"key=value DSN", "host=127.0.0.1 port=6432 user=app password='dsn pw@:/?#%' dbname=app statement_timeout=5000 driver=pq", "dsn pw",
			[]string{"driver:     pq", "pool mode:  direct (default", "statement_timeout=5000ms: sent as a startup parameter",
				"port 6432 is PgBouncer's default", "lib/pq:     binary_parameters=yes"}},
		{"encoded password", "postgres://app:Zq9%40x%3A%2F%3F%23%2541secret@db.example.com:5432/app?pool_mode=transaction", "41secret",
			[]string{"URL:        postgres://app:xxxxx@db.example.com:5432/app", "no DirectURL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, how := range []struct {
				env  []string
				args []string
			}{{nil, []string{"explain", tc.url}}, {[]string{"DATABASE_URL=" + tc.url}, []string{"explain"}}} {
				out, errOut, code := runBin(t, bin, how.env, how.args...)
				if code != 0 {
					t.Fatalf("exit %d, stderr %q", code, errOut)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
				if strings.Contains(out+errOut, tc.secret) {
					t.Errorf("output shows the password %q:\n%s%s", tc.secret, out, errOut)
				}
			}
		})
	}
	// A password that was not percent-encoded is refused, and none of it is shown.
	out, errOut, code := runBin(t, bin, nil, "explain", "postgres://app:Zq9@x:/?#%41secret@db.example.com:5432/app")
	if code != 2 || !strings.Contains(errOut, "percent-encode") || strings.Contains(out+errOut, "41secret") || strings.Contains(out+errOut, "Zq9") {
		t.Errorf("unencoded password: exit %d, stdout %q, stderr %q; want exit 2, a percent-encode hint, no password", code, out, errOut)
	}
}

func TestCheckArguments(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "no URL: give one, or set DATABASE_URL"},
		{[]string{"check", "postgres://u:p@127.0.0.1:1/db", "--driver", "foo"}, `--driver is "foo"`},
		{[]string{"check", "postgres://u:p@127.0.0.1:1/db?pool_mode=transaction"}, "--direct (or $DIRECT_URL) is required in transaction mode"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		_, errOut, code := runBin(t, bin, []string{"DATABASE_URL=", "DIRECT_URL="}, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	// Nothing listens on port 1: check fails at once, without the password.
	start := time.Now()
	_, errOut, code := runBin(t, bin, nil, "check", "postgres://u:unreachpw@127.0.0.1:1/db?sslmode=disable", "--driver", "pq")
	if code != 2 || !strings.Contains(errOut, "cannot reach postgres://u:xxxxx@127.0.0.1:1/db") || strings.Contains(errOut, "unreachpw") {
		t.Errorf("unreachable: exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("unreachable: took %s, want a fast failure", d)
	}
}

// TestCheckLocalStack runs check against the local stack's transaction
// pool on both drivers.
func TestCheckLocalStack(t *testing.T) {
	u := testdb.GetUnlocked(t, false) // check runs the conformance suite, which locks each of its tests
	bin := binary(t)
	out, errOut, code := runBin(t, bin, nil, "check", u.Tx, "--direct", u.Direct, "--mode", "transaction", "--json")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if !res.OK || res.Mode != "transaction" || len(res.Targets) != 2 {
		t.Fatalf("result: %+v, want ok, transaction mode, 2 targets", res)
	}
	for _, tr := range res.Targets {
		if tr.Failed != 0 || tr.Passed < 50 || tr.NamedParse != 0 || tr.RoundTrips == 0 {
			t.Errorf("%s: %d passed, %d failed, %d named Parse, %d round trips", tr.Driver, tr.Passed, tr.Failed, tr.NamedParse, tr.RoundTrips)
		}
		broke := int64(0)
		for _, r := range tr.RawDefaults {
			broke += r.Errors + r.Wrong
		}
		if len(tr.RawDefaults) != 2 || broke == 0 {
			t.Errorf("%s: negative control %+v, want both raw drivers, with errors or wrong answers", tr.Driver, tr.RawDefaults)
		}
	}
	if strings.Contains(out+errOut, "poolsafe-secret") {
		t.Error("the output shows the stack's password")
	}
	t.Logf("check --json:\n%s", out)
}
