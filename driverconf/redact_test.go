package driverconf_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/scrapersky/poolsafe/driverconf"
)

// secretParts are the fragments of the test passwords that must never be
// shown. The passwords are S3cr3t-Pa55 (and variants) and zz9/plural.
var secretParts = []string{"S3cr3t", "Pa55", "zz9", "plural"}

func checkNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, p := range secretParts {
		if strings.Contains(s, p) {
			t.Errorf("%s contains password fragment %q: %s", what, p, s)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"postgres://u:S3cr3t-Pa55@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"postgresql://u:S3cr3t-Pa55@h/db", "postgresql://u:xxxxx@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db", "postgres://h/db"},
		{"postgres://u:@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db?password=S3cr3t-Pa55", "postgres://u@h/db?password=xxxxx"},
		{"postgres://u@h/db?sslpassword=S3cr3t-Pa55&sslmode=require", "postgres://u@h/db?sslpassword=xxxxx&sslmode=require"},
		{"postgres://u:S3cr3t%2FPa55@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:S3cr3t-Pa55@h1:5432,h2:6543/db?pgbouncer=true", "postgres://u:xxxxx@h1:5432,h2:6543/db?pgbouncer=true"},
		{"  postgres://u:S3cr3t-Pa55@h/db  ", "postgres://u:xxxxx@h/db"},
		{"host=h password=S3cr3t-Pa55", "host='h' password='xxxxx'"},
		{"host=h password='S3cr3t Pa55' user=u", "host='h' password='xxxxx' user='u'"},
		{`host=h password='it\'s S3cr3t-Pa55'`, "host='h' password='xxxxx'"},
		{"host=h sslpassword=S3cr3t-Pa55", "host='h' sslpassword='xxxxx'"},
		{"host=h application_name='a b'", "host='h' application_name='a b'"},
		// Unreadable strings come back as a placeholder.
		{"postgres://u:zz9/plural@h/db", "(unreadable connection URL)"},
		{"postgres://u:zz9 plural@h/db", "(unreadable connection URL)"},
		{"postgres://u:zz9plural@h/db?%zz", "(unreadable connection URL)"},
		{"host=h password='zz9plural", "(unreadable connection string)"},
		{"zz9 plural", "(unreadable connection string)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got := driverconf.RedactURL(tt.in)
			if got != tt.want {
				t.Errorf("RedactURL = %q, want %q", got, tt.want)
			}
			checkNoSecret(t, "RedactURL", got)
		})
	}
}

// Inputs whose passwords String, LogValue and RedactURL must hide.
var redactInputs = []string{
	"postgres://app:S3cr3t-Pa55@db.example.com:5432/app",
	"postgresql://app:S3cr3t-Pa55@pooler:6543/app?pgbouncer=true&connection_limit=5",
	"postgres://app@db/app?password=S3cr3t-Pa55",
	"postgres://app:S3cr3t-Pa55@db/app?password=S3cr3t-Pa55&sslpassword=S3cr3t-Pa55",
	"postgres://app:S3cr3t%40Pa55@db/app",
	"postgres://app:zz9%2Fplural@db/app",
	"host=db user=app password=S3cr3t-Pa55 dbname=app",
	"host=db user=app password='S3cr3t Pa55' dbname=app pgbouncer=true",
	`host=db password='zz9\'plural' sslpassword=S3cr3t-Pa55 driver=pgx`,
}

func TestConfigStringAndLogValueRedact(t *testing.T) {
	t.Parallel()
	for _, in := range redactInputs {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			cfg.DirectURL = strings.Replace(in, "6543", "5432", 1)
			cfg.DirectURL = strings.Replace(cfg.DirectURL, "pgbouncer=true", "", 1)
			for _, c := range []driverconf.Config{cfg, cfg.WithDefaults()} {
				s := c.String()
				checkNoSecret(t, "String()", s)
				if !strings.Contains(s, "xxxxx") {
					t.Errorf("String() does not show the redacted password: %s", s)
				}
				checkNoSecret(t, "Notes()", strings.Join(c.Notes(), "\n"))

				var buf bytes.Buffer
				slog.New(slog.NewTextHandler(&buf, nil)).Info("db", "config", c)
				slog.New(slog.NewJSONHandler(&buf, nil)).Info("db", "config", c)
				logged := buf.String()
				checkNoSecret(t, "LogValue", logged)
				for _, want := range []string{"config.url=", "config.direct_url=", "config.driver=", "config.pool_mode=", `"max_open_conns"`} {
					if !strings.Contains(logged, want) {
						t.Errorf("log output lacks %q: %s", want, logged)
					}
				}
			}
			checkNoSecret(t, "RedactURL", driverconf.RedactURL(in))
		})
	}
}

// brokenInputs are connection strings that fail somewhere between Parse
// and NewConnector and carry a distinctive password.
var brokenInputs = []string{
	// URL syntax
	"postgres://u:zz9/plural@h/db",
	"postgres://u:zz9/plural@h:5432/db?pgbouncer=true",
	"postgres://u:zz9#plural@h/db",
	"postgres://u:zz9?plural@h/db",
	"postgres://u:zz9 plural@h/db",
	"postgres://u:zz9%plural@h/db",
	"postgres://u:zz9%2Fplural@h:port/db",
	"postgres://u:S3cr3t-Pa55@h/db?%zz",
	"postgres://u:S3cr3t-Pa55@h:99999/db",
	"mysql://u:S3cr3t-Pa55@h/db",
	// keys
	"postgres://u:S3cr3t-Pa55@h/db?driver=mysql",
	"postgres://u:S3cr3t-Pa55@h/db?pool_mode=bogus",
	"postgres://u:S3cr3t-Pa55@h/db?pool_mode=direct&pgbouncer=true",
	"postgres://u:S3cr3t-Pa55@h/db?pgbouncer=maybe",
	"postgres://u:S3cr3t-Pa55@h/db?sslmode=bogus",
	"postgres://u:S3cr3t-Pa55@h/db?statement_timeout=abc",
	"postgres://u:S3cr3t-Pa55@h/db?client_encoding=latin1",
	"postgres://u:S3cr3t-Pa55@h/db?hostaddr=10.0.0.1",
	"postgres://u:S3cr3t-Pa55@h/db?sslpassword=S3cr3t-Pa55&driver=pq",
	"postgres://u:S3cr3t-Pa55@h/db?password=S3cr3t-Pa55&password=S3cr3t-Pa55",
	"postgres://u:S3cr3t-Pa55@h/db?pgbouncer=true&default_query_exec_mode=cache_statement",
	"postgres://u:S3cr3t-Pa55@h/db?pool_min_conns=10&pool_max_conns=5",
	"postgres://u:S3cr3t-Pa55@h/db?options=-x",
	"postgres://u:S3cr3t-Pa55@h/db?bad-key=1",
	// key=value
	"host=h password=zz9 plural",
	"host=h password='zz9plural",
	"host=h password=S3cr3t-Pa55 port=abc",
	"host=h password=S3cr3t-Pa55 port=abc driver=pq",
	"host=h password=S3cr3t-Pa55 target_session_attrs=bogus",
	"host=h password=S3cr3t-Pa55 target_session_attrs=bogus driver=pq",
	"host=h password=S3cr3t-Pa55 password=S3cr3t-Pa55",
	"host=h password='S3cr3t-Pa55' sslmode=bogus",
	// a quote in the password must not confuse the drivers' own redaction
	`host=h password='zz9\'plural' port=abc`,
	`host=h password='zz9\'plural' port=abc driver=pq`,
	"postgres://u:zz9%27plural@h/db?port=abc",
	"postgres://u:zz9%27plural@h/db?target_session_attrs=bogus",
	"postgres://u:zz9%27plural@h/db?port=abc&driver=pq",
}

func TestErrorsNeverContainPassword(t *testing.T) {
	t.Parallel()
	for _, in := range brokenInputs {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			var errs []error
			cfg, err := driverconf.Parse(in)
			errs = append(errs, err)
			checkNoSecret(t, "Parse Config", cfg.String())
			for _, c := range []driverconf.Config{
				{URL: in},
				{URL: in, Driver: driverconf.PGX},
				{URL: in, Driver: driverconf.PQ},
				{URL: "postgres://h/db", DirectURL: in},
			} {
				errs = append(errs, c.Validate())
				_, err := driverconf.NewConnector(c)
				errs = append(errs, err)
				db, err := driverconf.Open(c)
				if db != nil {
					db.Close()
				}
				errs = append(errs, err)
				checkNoSecret(t, "String()", c.String())
			}
			failed := false
			for _, err := range errs {
				if err == nil {
					continue
				}
				failed = true
				checkNoSecret(t, "error", err.Error())
				for _, fe := range fieldErrors(err) {
					checkNoSecret(t, "FieldError.Field", fe.Field)
				}
			}
			if !failed {
				t.Errorf("no step failed for %q; the input is not broken", in)
			}
		})
	}
}

// A password that starts with digits and holds an unencoded "/" (such as
// 2024/zz9plural) still makes a syntactically valid URL: url.Parse reads
// "u:2024" as host u and port 2024 and "/zz9plural@h/db" as the path, so
// Parse succeeds with dbname "zz9plural@h/db" and String() (documented as
// redacting passwords) prints the rest of the password. A dbname holding
// "@" in a URL without user info almost always means this mistake, and
// should be rejected like the other unencoded-password URLs.
func TestUnencodedPasswordReadAsPortAndPath(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"postgres://u:2024/zz9plural@h/db",
		"postgres://u:2024/zz9plural@h:5432/db?sslmode=require",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(in)
			if err != nil {
				checkNoSecret(t, "error", err.Error())
				return
			}
			checkNoSecret(t, "String()", cfg.String())
			checkNoSecret(t, "RedactURL", driverconf.RedactURL(in))
		})
	}
}

// RedactURL must read every URL Parse reads: otherwise String() and LogValue
// show "(unreadable connection URL)" for a working configuration. Parse splits
// the query on "&" only; RedactURL uses url.ParseQuery, which also rejects
// ";".
func TestRedactURLReadsWhatParseReads(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"postgres://u:S3cr3t-Pa55@h/db?application_name=a;b",
		"postgres://u:S3cr3t-Pa55@h/db?options=-c%20app.list%3Da;b",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := driverconf.RedactURL(in)
			checkNoSecret(t, "RedactURL", got)
			if strings.HasPrefix(got, "(") || !strings.Contains(got, "u:xxxxx@h/db?") {
				t.Errorf("RedactURL(%q) = %q, want the URL with the password redacted", in, got)
			}
			if s := cfg.String(); strings.Contains(s, "unreadable") {
				t.Errorf("String() = %s", s)
			}
		})
	}
}

// A password pasted without percent-encoding must not leak through a URL
// that happens to parse: no fragment, no empty port, nothing echoed.
func TestUnencodedPasswordRefusedAndNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "Zq9@x:/?#%41secret"
	for _, raw := range []string{
		"postgres://app:" + secret + "@db.example.com:5432/app",
		"postgres://app:pw#frag@db.example.com/app",
		"postgres://app:pw@host:/app",
	} {
		_, err := driverconf.Parse(raw)
		if err == nil {
			t.Errorf("Parse(%q) succeeded; want a refusal", raw)
			continue
		}
		for _, s := range []string{err.Error(), fmt.Sprint(driverconf.Config{URL: raw}), fmt.Sprintf("%+v", driverconf.Config{URL: raw}), driverconf.RedactURL(raw)} {
			for _, part := range []string{"secret", "%41", "Zq9", "frag"} {
				if strings.Contains(s, part) {
					t.Errorf("output %q shows %q of the password", s, part)
				}
			}
		}
		if !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("error %q does not say to percent-encode the password", err)
		}
	}
}
