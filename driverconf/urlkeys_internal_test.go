package driverconf

import (
	"strings"
	"testing"
	"time"
)

// An unencoded "?" in a password ends the URL's authority for Go's URL
// parser: the password's rest became a query key with a valid setting
// name, and was printed in full.
func TestQuestionMarkInPasswordIsRefused(t *testing.T) {
	const secret = "Zq9xK"
	for _, raw := range []string{
		"postgres://app:5432?tenant=" + secret + "@db.example.com/app",
		"postgres://app:5432?connection_limit=" + secret + "@db.example.com/app",
		"postgres://app:12/ab?x=" + secret + "@db.example.com/app",
		"postgresql://app:p?tenant=" + secret + "@db.example.com",
	} {
		cfg, err := Parse(raw)
		if err == nil {
			t.Errorf("Parse accepted a URL whose password holds an unencoded '?': %s", cfg.String())
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse's error shows the password: %v", err)
		}
		if got := RedactURL(raw); strings.Contains(got, secret) {
			t.Errorf("RedactURL shows the password: %s", got)
		}
		c := Config{URL: raw}
		for name, out := range map[string]string{"String": c.String(), "Explain": c.Explain()} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows the password: %s", name, out)
			}
		}
	}
	// An "@" after the authority is no password: these still parse.
	for _, raw := range []string{
		"postgres://u:p@h/db?application_name=me@example",
		"postgres://u:p@h?application_name=me@example",
		"postgres://u:p%3Fq@h/db",
	} {
		if _, err := Parse(raw); err != nil {
			t.Errorf("Parse(%s): %v", RedactURL(raw), err)
		}
	}
}

// A password key written in another case is refused, never sent or
// printed as a server setting.
func TestMiscasedPasswordKeyIsRefused(t *testing.T) {
	const secret = "Zq9xK"
	for _, raw := range []string{
		"host=h dbname=db Password=" + secret,
		"postgres://u@h/db?PASSWORD=" + secret,
		"host=h sslPassword=" + secret,
	} {
		_, err := Parse(raw)
		if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "password") {
			t.Errorf("Parse: %v; want an error naming password, without the value", err)
		}
		c := Config{URL: raw}
		for name, out := range map[string]string{"RedactURL": RedactURL(raw), "String": c.String(), "Explain": c.Explain()} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows the password: %s", name, out)
			}
		}
	}
}

// libpq decodes only %XX in a URL's query; "+" is a plus sign.
func TestPlusInQueryIsAPlus(t *testing.T) {
	cfg, err := Parse("postgres://u@h/db?password=a+b&application_name=my+app%20x")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ApplicationName != "my+app x" {
		t.Errorf("ApplicationName = %q, want %q", cfg.ApplicationName, "my+app x")
	}
	r, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if dsn := r.dsn(); !strings.Contains(dsn, "password='a+b'") {
		t.Errorf("dsn does not carry the password a+b") // not printed: it is the password
	}
	// RedactURL writes a space as %20, so that the printed URL reads back the same.
	if got := RedactURL("postgres://u:p@h/db?password=x&application_name=my+app%20x"); !strings.Contains(got, "application_name=my%2Bapp%20x") {
		t.Errorf("RedactURL = %s", got)
	}
}

// Direct() and the replicas read DirectURL's and each replica URL's own
// keys: what Parse read from URL into fields does not carry over; fields
// set explicitly do.
func TestOtherURLsReadTheirOwnKeys(t *testing.T) {
	cfg, err := Parse("postgres://u:p@pooler:6543/db?sslmode=require&application_name=pooled&statement_timeout=7000&search_path=a")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DirectURL = "postgres://u:p@db:5432/db?sslmode=disable"
	cfg.LockTimeout = 3 * time.Second // explicit: carries over
	r := resolvedDirect(t, cfg)
	if r.cfg.SSLMode != "disable" || r.cfg.ApplicationName != "" || r.cfg.StatementTimeout != 0 || r.cfg.SearchPath != "" {
		t.Errorf("Direct() kept the pooled URL's keys: sslmode %q, application_name %q, statement_timeout %s, search_path %q",
			r.cfg.SSLMode, r.cfg.ApplicationName, r.cfg.StatementTimeout, r.cfg.SearchPath)
	}
	if r.cfg.LockTimeout != 3*time.Second || r.cfg.PoolMode != Direct {
		t.Errorf("Direct(): lock_timeout %s (want the explicit 3s), pool mode %s", r.cfg.LockTimeout, r.cfg.PoolMode)
	}

	cfg.ReplicaURLs = []string{"postgres://u:p@replica/db?sslmode=verify-full", "postgres://u:p@replica2/db"}
	reps, err := cfg.replicas()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"verify-full", DefaultSSLMode} {
		rr, err := reps[i].resolve()
		if err != nil {
			t.Fatal(err)
		}
		if rr.cfg.SSLMode != want || rr.cfg.ApplicationName != "" || rr.cfg.LockTimeout != 3*time.Second {
			t.Errorf("replica %d: sslmode %q (want %q), application_name %q, lock_timeout %s", i, rr.cfg.SSLMode, want, rr.cfg.ApplicationName, rr.cfg.LockTimeout)
		}
	}

	// A field set explicitly after Parse, to another value than the URL's, is kept.
	cfg.SSLMode = "verify-ca"
	if r := resolvedDirect(t, cfg); r.cfg.SSLMode != "verify-ca" {
		t.Errorf("Direct() dropped an explicit SSLMode: %q", r.cfg.SSLMode)
	}
}

// What a variable sets is explicit: it carries over to DirectURL even when
// it equals the URL's value.
func TestVariablesCarryOverToDirectURL(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":         "postgres://u:p@pooler:6543/db?statement_timeout=5000&sslmode=require&application_name=a",
		"DIRECT_URL":           "postgres://u:p@db:5432/db?sslmode=disable",
		"DB_STATEMENT_TIMEOUT": "5s",
		"DB_LOCK_TIMEOUT":      "0",
	}
	cfg, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r := resolvedDirect(t, cfg)
	got := map[string]string{}
	for _, s := range r.cfg.TxSettings() {
		got[s[0]] = s[1]
	}
	if r.cfg.SSLMode != "disable" || r.cfg.ApplicationName != "" || got["statement_timeout"] != "5000ms" || got["lock_timeout"] != "0" {
		t.Errorf("Direct(): sslmode %q, application_name %q, settings %v; want disable, none, statement_timeout 5000ms and lock_timeout 0",
			r.cfg.SSLMode, r.cfg.ApplicationName, r.cfg.TxSettings())
	}
}

// A field set explicitly wins over the URL's explicit 0, and an explicit 0
// (field or environment) wins over the URL's value.
func TestExplicitTimeoutsWinOverTheURL(t *testing.T) {
	cfg, err := Parse("postgres://u:p@h/db?statement_timeout=0&lock_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.StatementTimeout = 5 * time.Second
	r, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range r.cfg.TxSettings() {
		if _, dup := got[s[0]]; dup {
			t.Errorf("TxSettings sets %s twice: %v", s[0], r.cfg.TxSettings())
		}
		got[s[0]] = s[1]
	}
	if got["statement_timeout"] != "5000ms" || got["lock_timeout"] != "0" {
		t.Errorf("TxSettings = %v, want statement_timeout 5000ms and lock_timeout 0", r.cfg.TxSettings())
	}

	env := map[string]string{
		"DATABASE_URL":         "postgres://u:p@h/db?statement_timeout=5000&lock_timeout=2000",
		"DB_STATEMENT_TIMEOUT": "0",
	}
	ecfg, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	r, err = ecfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, s := range r.cfg.TxSettings() {
		got[s[0]] = s[1]
	}
	if got["statement_timeout"] != "0" || got["lock_timeout"] != "2000ms" {
		t.Errorf("TxSettings = %v, want statement_timeout 0 (DB_STATEMENT_TIMEOUT) and lock_timeout 2000ms (URL)", r.cfg.TxSettings())
	}
}

// resolvedDirect resolves cfg.Direct().
func resolvedDirect(t *testing.T, cfg Config) *resolved {
	t.Helper()
	d, err := cfg.Direct()
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Explain reports the URL's keys for a Config built by hand too.
func TestExplainHandBuiltNotes(t *testing.T) {
	c := Config{URL: "postgres://u:p@h/db?pgbouncer=true&binary_parameters=yes"}
	if out := c.Explain(); !strings.Contains(out, "URL keys:") || !strings.Contains(out, "binary_parameters") {
		t.Errorf("Explain() of a hand-built Config leaves out the URL keys:\n%s", out)
	}
}

// The URL forms libpq and pgx accept for several hosts, IPv6 hosts with
// ports and percent-encoded socket directories, which Go's URL parser
// refuses.
func TestMultiHostAndSocketURLs(t *testing.T) {
	for _, tc := range []struct{ url, host, port string }{
		{"postgres://u:p@h1:5433,h2/db", "h1,h2", "5433,5432"},
		{"postgres://u:p@h1,h2:5433/db", "h1,h2", "5432,5433"},
		{"postgres://u:p@[::1]:5432,[::2]:5433/db", "::1,::2", "5432,5433"},
		{"postgres://u:p@[::1],[::2]/db", "::1,::2", ""},
		{"postgres://u:p@h1:5432,[::1]:5433/db?sslmode=disable", "h1,::1", "5432,5433"},
		{"postgres://u:p@%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", ""},
		{"postgres://u:p@%2Ftmp:5433/db", "/tmp", "5433"},
	} {
		cfg, err := Parse(tc.url)
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.url, err)
			continue
		}
		r, err := cfg.resolve()
		if err != nil {
			t.Errorf("resolve(%s): %v", tc.url, err)
			continue
		}
		got := map[string]string{}
		for _, e := range r.conn {
			got[e.k] = e.v
		}
		if got["host"] != tc.host || got["port"] != tc.port || got["dbname"] != "db" || got["user"] != "u" {
			t.Errorf("%s: host %q port %q dbname %q user %q; want host %q port %q", tc.url, got["host"], got["port"], got["dbname"], got["user"], tc.host, tc.port)
		}
		if red := RedactURL(tc.url); strings.Contains(red, ":p@") || !strings.Contains(red, "xxxxx") {
			t.Errorf("RedactURL(%s) = %s", tc.url, red)
		}
	}
	// Still refused: an empty port (an unencoded ':' in a password), a bad one.
	for _, raw := range []string{"postgres://u:p@h1:,h2/db", "postgres://u:p@h1:x,h2/db", "postgres://u:p@[::1,h2/db"} {
		if _, err := Parse(raw); err == nil {
			t.Errorf("Parse(%s) accepted it", raw)
		}
	}
}

// PGSSLMODE is the default sslmode, as in libpq: poolsafe writes sslmode
// for the driver, so the driver's own reading of it never happens.
func TestPGSSLMODEIsTheDefault(t *testing.T) {
	t.Setenv("PGSSLMODE", "require")
	for url, want := range map[string]string{
		"postgres://u:p@db.example.com/db":                     "require",
		"postgres://u:p@db.example.com/db?sslmode=verify-full": "verify-full",
	} {
		r, err := Config{URL: url}.resolve()
		if err != nil {
			t.Fatal(err)
		}
		if r.cfg.SSLMode != want || !strings.Contains(r.dsn(), "sslmode='"+want+"'") {
			t.Errorf("%s with PGSSLMODE=require: sslmode %q, want %q", url, r.cfg.SSLMode, want)
		}
	}
	t.Setenv("PGSSLMODE", "bogus")
	if _, err := (Config{URL: "postgres://u:p@h/db"}).resolve(); err == nil || !strings.Contains(err.Error(), "SSLMode") {
		t.Errorf("PGSSLMODE=bogus: %v, want an error naming SSLMode", err)
	}
}
