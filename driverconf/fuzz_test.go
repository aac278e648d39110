package driverconf_test

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/scrapersky/poolsafe/driverconf"
)

// FuzzParse feeds Parse three ways: the raw input as is, a URL built with
// url.UserPassword from the fuzzed password plus the fuzzed query string,
// and a key=value DSN with the password quoted plus the query's pairs. Parse
// (and Validate, String, Notes, LogValue, RedactURL) must never panic, and
// a distinctive password must never appear in what they return.
func FuzzParse(f *testing.F) {
	seeds := []struct{ raw, password, query string }{
		{"postgres://u:p@h:5432/db?raw_sql=true&no_prepare=true&statement_cache_size=0", "S3cr3t-Pa55", "raw_sql=true&no_prepare=true&statement_cache_size=0"},
		{"postgres://u:p@h:6543/db?pgbouncer=true&connection_limit=5", "S3cr3t-Pa55", "pgbouncer=true&connection_limit=5"},
		{"postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres?pgbouncer=true&connection_limit=1&pool_timeout=20", "zz9/plural", "pool_timeout=20&schema=tenant"},
		{"postgres://u:ab/cd@h/db", "zz9/plural", ""},
		{"postgres://app:s%40cret@db:5432/app?sslmode=require&application_name=worker", "s@cret:with/every?char#", "sslmode=require&application_name=worker"},
		{"postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write", "Pa55w0rd!", "target_session_attrs=read-write"},
		{"postgres://u@h/db?password=S3cr3t-Pa55&pool_mode=transaction", "S3cr3t-Pa55", "pool_mode=transaction"},
		{"postgres://u:p@h/db?pool_max_conns=20&pool_min_conns=2&pool_max_conn_lifetime=1h&pool_max_conn_idle_time=5m", "hunter2hunter2", "pool_max_conns=20&pool_min_conns=2"},
		{"postgres://u:p@h/db?statement_timeout=5s&lock_timeout=1min&idle_in_transaction_session_timeout=60000", "p", "statement_timeout=5000&lock_timeout=1min"},
		{"postgres://u:p@h/db?options=-c%20search_path%3Dx%20-c%20work_mem%3D64MB", "S3cr3t-Pa55", "options=-c%20search_path%3Dx%20-c%20work_mem%3D64MB"},
		{"postgres://u:p@h/db?binary_parameters=yes&statement_cache_capacity=0&description_cache_capacity=0&default_query_exec_mode=cache_statement", "S3cr3t-Pa55", "binary_parameters=yes&default_query_exec_mode=simple_protocol"},
		{"postgres://u:p@h/db?driver=pq&pool_mode=direct&pgbouncer=true", "S3cr3t-Pa55", "pool_mode=direct&pgbouncer=true"},
		{"host=h port=5432 dbname=db user=u password='S3cr3t Pa55' pgbouncer=true", "S3cr3t Pa55", "pgbouncer=true&driver=pq"},
		{`host=h password='it\'s' application_name='my \\ app' options='-c search_path=a\\,b'`, `it's\`, "application_name=x"},
		{"host=h password='unterminated", "zz9plural", "%zz"},
		{"postgres://u:p@h/db?client_encoding=latin1&prepareThreshold=0&prepare_threshold=0", "S3cr3t-Pa55", "client_encoding=UTF8&prepareThreshold=0"},
		{"postgres://u:p@h/db?sslmode=disable&sslmode=require", "S3cr3t-Pa55", "sslmode=disable&sslmode=require"},
		{"postgres://u:p@[::1]:99999/db?app.tenant_id=42&bad-key=1", "S3cr3t-Pa55", "app.tenant_id=42&bad-key=1"},
	}
	for _, s := range seeds {
		f.Add(s.raw, s.password, s.query)
	}
	f.Fuzz(func(t *testing.T, raw, password, query string) {
		_ = outputs(raw)

		check := distinctive(password)
		for _, build := range []struct {
			form string
			make func(pw string) string
		}{
			{"URL", func(pw string) string {
				u := url.URL{Scheme: "postgres", User: url.UserPassword("app", pw), Host: "db.example.com:5432", Path: "/app", RawQuery: query}
				return u.String()
			}},
			{"DSN", func(pw string) string {
				return "host=db.example.com user=app dbname=app password=" + quoteDSN(pw) + " " + strings.ReplaceAll(query, "&", " ")
			}},
		} {
			got := outputs(build.make(password))
			if !check {
				continue
			}
			for _, secret := range []string{password, url.UserPassword("", password).String()[1:]} {
				if len(secret) < 6 || !strings.Contains(got, secret) {
					continue
				}
				// The same text with another password tells a leak from a
				// coincidence (the query string may hold the same bytes).
				if control := outputs(build.make(sentinel)); strings.Contains(control, secret) {
					continue
				}
				t.Fatalf("%s form: password %q appears in output:\n%s", build.form, password, got)
			}
		}
	})
}

const sentinel = "Sentinel-Passw0rd"

// distinctive reports whether a password is worth checking for: long enough
// not to occur by chance and free of the characters messages are made of
// (quotes, separators, escapes, whitespace).
func distinctive(pw string) bool {
	if len(pw) < 6 || !utf8.ValidString(pw) || strings.Contains(pw, "xxxxx") {
		return false
	}
	return !strings.ContainsAny(pw, " \t\r\n\v\f\"'`\\=:;,.%&?#/@[]{}()<>+*|!$^~") &&
		strings.IndexFunc(pw, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

// quoteDSN quotes v as a libpq key=value value.
func quoteDSN(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// outputs runs everything that turns a connection string into text a user
// may see and returns that text.
func outputs(in string) string {
	var b strings.Builder
	b.WriteString(driverconf.RedactURL(in))
	b.WriteByte('\n')
	cfg, err := driverconf.Parse(in)
	if err != nil {
		b.WriteString(err.Error())
		b.WriteByte('\n')
	}
	b.WriteString(cfg.String())
	b.WriteByte('\n')
	b.WriteString(strings.Join(cfg.Notes(), "\n"))
	b.WriteByte('\n')
	b.WriteString(cfg.LogValue().String())
	b.WriteByte('\n')
	// Validate is pure (no network, no files): safe on fuzzed input.
	for _, c := range []driverconf.Config{{URL: in}, {URL: in, Driver: driverconf.PQ}, {URL: "postgres://h/db", DirectURL: in}} {
		if err := c.Validate(); err != nil {
			b.WriteString(err.Error())
			b.WriteByte('\n')
		}
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	if err == nil {
		if err := cfg.Validate(); err != nil {
			b.WriteString(err.Error())
			b.WriteByte('\n')
		}
		d := cfg.WithDefaults()
		b.WriteString(d.String())
		for _, s := range d.TxSettings() {
			b.WriteString(s[0] + "=" + s[1] + "\n")
		}
	}
	return b.String()
}
