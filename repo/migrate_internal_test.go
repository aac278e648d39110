package repo

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
)

// Behind a transaction pooler the migration connects over DirectURL with
// every explicit field of the configuration kept, not only Driver: the
// sslmode the user asked for, the timeouts (an explicit 0 is "disabled"
// and must be sent, not taken for unset), the application name and the
// settings.
func TestMigrationConfigKeepsExplicitFields(t *testing.T) {
	t.Parallel()
	// port 6543: transaction pooler. Its URL's keys are its own: the
	// migration reads DirectURL's (lock_timeout=0), not URL's
	// (idle_session_timeout).
	cfg, err := driverconf.Parse("postgres://app:pw@127.0.0.1:6543/app?idle_session_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DirectURL = "postgres://app:pw@127.0.0.1:5432/app?sslmode=prefer&lock_timeout=0"
	cfg.Driver = driverconf.PQ
	cfg.SSLMode = "verify-full"
	cfg.StatementTimeout = 90 * time.Second
	cfg.IdleInTransactionTimeout = time.Minute
	cfg.ApplicationName = "billing"
	cfg.Settings["app.tenant"] = "t1"
	cfg.ConnectTimeout = 3 * time.Second

	m, err := migrationConfig(cfg, "backoffice")
	if err != nil {
		t.Fatal(err)
	}
	if m.URL != cfg.DirectURL || m.DirectURL != "" {
		t.Errorf("URL, DirectURL = %q, %q; want the direct URL and none", m.URL, m.DirectURL)
	}
	if m.PoolMode != driverconf.Direct {
		t.Errorf("PoolMode = %q, want direct (from DirectURL)", m.PoolMode)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"Driver", m.Driver, driverconf.PQ},
		{"SSLMode", m.SSLMode, "verify-full"}, // not the direct URL's prefer
		{"StatementTimeout", m.StatementTimeout, 90 * time.Second},
		{"IdleInTransactionTimeout", m.IdleInTransactionTimeout, time.Minute},
		{"ConnectTimeout", m.ConnectTimeout, 3 * time.Second},
		{"ApplicationName", m.ApplicationName, "billing"},
		{"SearchPath", m.SearchPath, "backoffice"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	settings := m.TxSettings()
	for _, want := range [][2]string{{"statement_timeout", "90000ms"}, {"app.tenant", "t1"}} {
		if !slices.Contains(settings, want) {
			t.Errorf("settings %v lack %s=%s", settings, want[0], want[1])
		}
	}
	// What the direct connection gets, its URL's keys included.
	if x := m.Explain(); !strings.Contains(x, "lock_timeout=0") || strings.Contains(x, "idle_session_timeout") {
		t.Errorf("the migration connection should get DirectURL's lock_timeout=0 and not URL's idle_session_timeout:\n%s", x)
	}
}

// Without a transaction pooler the configuration itself is used, its
// explicit fields unchanged.
func TestMigrationConfigDirect(t *testing.T) {
	t.Parallel()
	cfg := driverconf.Config{URL: "postgres://app@127.0.0.1:5432/app", SSLMode: "verify-full", LockTimeout: 5 * time.Second}
	m, err := migrationConfig(cfg, "public")
	if err != nil {
		t.Fatal(err)
	}
	if m.URL != cfg.URL || m.SSLMode != "verify-full" || m.LockTimeout != 5*time.Second {
		t.Errorf("got URL %q, SSLMode %q, LockTimeout %v; want the configuration's own", m.URL, m.SSLMode, m.LockTimeout)
	}
}
