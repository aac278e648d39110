package driverconf_test

import (
	"testing"

	"github.com/scrapersky/poolsafe/driverconf"
)

// fallback_application_name is libpq's name for when the connection string
// gives no application_name at all: an application_name, even an empty
// one, wins.
func TestFallbackApplicationName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ dsn, want string }{
		{"host=127.0.0.1 application_name=foo fallback_application_name=bar", "foo"},
		{"host=127.0.0.1 fallback_application_name=bar application_name=foo", "foo"},
		{"host=127.0.0.1 application_name='' fallback_application_name=bar", ""},
		{"host=127.0.0.1 fallback_application_name=bar", "bar"},
		{"postgres://u@127.0.0.1/db?application_name=&fallback_application_name=bar", ""},
		{"postgres://u@127.0.0.1/db?fallback_application_name=bar", "bar"},
	} {
		cfg, err := driverconf.Parse(c.dsn)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.dsn, err)
		}
		if cfg.ApplicationName != c.want {
			t.Errorf("Parse(%q).ApplicationName = %q, want %q", c.dsn, cfg.ApplicationName, c.want)
		}
	}
}

// database= is both drivers' alias of dbname: it names the database to
// connect to, not a server setting (set_config('database', …) fails).
func TestDatabaseKey(t *testing.T) {
	t.Parallel()
	cfg, err := driverconf.Parse("host=127.0.0.1 dbname=A database=B")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Settings["database"]; ok {
		t.Errorf("database= became a server setting: %v (notes %q)", cfg.Settings, cfg.Notes())
	}
}
