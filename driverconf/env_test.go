package driverconf

import (
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envLookup returns a lookup function over m, like os.LookupEnv.
func envLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// checkField fails t unless err is an ErrInvalidConfig carrying a
// *FieldError for field (possibly inside an errors.Join). field may list
// alternatives separated by "|".
func checkField(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a *FieldError for %q", field)
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
	}
	var leaves []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		leaves = append(leaves, e)
	}
	walk(err)
	var fields []string
	for _, l := range leaves {
		var fe *FieldError
		if errors.As(l, &fe) {
			for _, f := range strings.Split(field, "|") {
				if fe.Field == f {
					return
				}
			}
			fields = append(fields, fe.Field)
		}
	}
	t.Errorf("error %q: fields %q, want one for %q", err, fields, field)
}

const envURL = "postgres://app:pw@db.example.com:5432/app"

func TestFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want func(*Config)
	}{
		{"DATABASE_URL only", map[string]string{EnvDatabaseURL: envURL}, func(c *Config) {}},
		{"DATABASE_URL keys", map[string]string{EnvDatabaseURL: envURL + "?pgbouncer=true&connection_limit=5&statement_timeout=5s"},
			func(c *Config) {
				c.PoolMode, c.MaxOpenConns, c.StatementTimeout = Transaction, 5, 5*time.Second
			}},
		{"DIRECT_URL", map[string]string{EnvDatabaseURL: "postgres://u:p@h:6543/db", EnvDirectURL: "postgres://u:p@h:5432/db"},
			func(c *Config) { c.PoolMode, c.DirectURL = Transaction, "postgres://u:p@h:5432/db" }},
		{"DB_DRIVER pq", map[string]string{EnvDatabaseURL: envURL, EnvDriver: "pq"}, func(c *Config) { c.Driver = PQ }},
		{"DB_DRIVER PGX", map[string]string{EnvDatabaseURL: envURL, EnvDriver: "PGX"}, func(c *Config) { c.Driver = PGX }},
		{"DB_POOL_MODE", map[string]string{EnvDatabaseURL: envURL, EnvPoolMode: "Transaction"}, func(c *Config) { c.PoolMode = Transaction }},
		{"DB_POOL_MODE session", map[string]string{EnvDatabaseURL: envURL, EnvPoolMode: "session"}, func(c *Config) { c.PoolMode = Session }},
		{"DB_PGX_EXEC_MODE", map[string]string{EnvDatabaseURL: envURL, EnvPgxExecMode: "SIMPLE_PROTOCOL"},
			func(c *Config) { c.PgxExecMode = ExecModeSimpleProtocol }},
		{"DB_MAX_OPEN_CONNS", map[string]string{EnvDatabaseURL: envURL, EnvMaxOpenConns: "20"}, func(c *Config) { c.MaxOpenConns = 20 }},
		{"DB_MAX_IDLE_CONNS", map[string]string{EnvDatabaseURL: envURL, EnvMaxIdleConns: "3"}, func(c *Config) { c.MaxIdleConns = 3 }},
		{"DB_CONN_MAX_LIFETIME Go", map[string]string{EnvDatabaseURL: envURL, EnvConnMaxLifetime: "1h"}, func(c *Config) { c.ConnMaxLifetime = time.Hour }},
		{"DB_CONN_MAX_LIFETIME seconds", map[string]string{EnvDatabaseURL: envURL, EnvConnMaxLifetime: "1800"},
			func(c *Config) { c.ConnMaxLifetime = 30 * time.Minute }},
		{"DB_CONN_MAX_IDLE_TIME", map[string]string{EnvDatabaseURL: envURL, EnvConnMaxIdleTime: "90s"}, func(c *Config) { c.ConnMaxIdleTime = 90 * time.Second }},
		{"DB_ACQUIRE_TIMEOUT fractional", map[string]string{EnvDatabaseURL: envURL, EnvAcquireTimeout: "2.5"},
			func(c *Config) { c.AcquireTimeout = 2500 * time.Millisecond }},
		{"DB_CONNECT_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvConnectTimeout: "15"}, func(c *Config) { c.ConnectTimeout = 15 * time.Second }},
		{"DB_STATEMENT_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvStatementTimeout: "30s"}, func(c *Config) { c.StatementTimeout = 30 * time.Second }},
		{"DB_STATEMENT_TIMEOUT bare number is seconds", map[string]string{EnvDatabaseURL: envURL, EnvStatementTimeout: "30"},
			func(c *Config) { c.StatementTimeout = 30 * time.Second }},
		{"DB_LOCK_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvLockTimeout: "500ms"}, func(c *Config) { c.LockTimeout = 500 * time.Millisecond }},
		{"DB_IDLE_IN_TRANSACTION_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvIdleInTransactionTimeout: "1m"},
			func(c *Config) { c.IdleInTransactionTimeout = time.Minute }},
		{"DB_SEARCH_PATH", map[string]string{EnvDatabaseURL: envURL, EnvSearchPath: "tenant,public"}, func(c *Config) { c.SearchPath = "tenant,public" }},
		{"DB_APPLICATION_NAME", map[string]string{EnvDatabaseURL: envURL, EnvApplicationName: "worker"}, func(c *Config) { c.ApplicationName = "worker" }},
		{"DB_SSLMODE", map[string]string{EnvDatabaseURL: envURL, EnvSSLMode: "require"}, func(c *Config) { c.SSLMode = "require" }},
		{"DB_ISOLATION", map[string]string{EnvDatabaseURL: envURL, EnvIsolation: "REPEATABLE READ"}, func(c *Config) { c.Isolation = sql.LevelRepeatableRead }},
		{"DB_ISOLATION underscores", map[string]string{EnvDatabaseURL: envURL, EnvIsolation: "serializable"}, func(c *Config) { c.Isolation = sql.LevelSerializable }},

		// legacy names
		{"DB_MAX_POOL_SIZE", map[string]string{EnvDatabaseURL: envURL, EnvMaxPoolSize: "8"}, func(c *Config) { c.MaxOpenConns = 8 }},
		{"DB_MIN_POOL_SIZE", map[string]string{EnvDatabaseURL: envURL, EnvMinPoolSize: "2"}, func(c *Config) { c.MaxIdleConns = 2 }},
		{"DB_CONNECTION_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvConnectionTimeout: "30"}, func(c *Config) { c.ConnectTimeout = 30 * time.Second }},
		{"legacy and new agree", map[string]string{EnvDatabaseURL: envURL, EnvMaxPoolSize: "8", EnvMaxOpenConns: "8",
			EnvMinPoolSize: "2", EnvMaxIdleConns: "2", EnvConnectionTimeout: "30", EnvConnectTimeout: "30s"},
			func(c *Config) { c.MaxOpenConns, c.MaxIdleConns, c.ConnectTimeout = 8, 2, 30*time.Second }},
		{"original system's variables", map[string]string{
			EnvDatabaseURL: "postgres://u:p@h:5432/db?raw_sql=true&no_prepare=true&statement_cache_size=0",
			EnvMinPoolSize: "5", EnvMaxPoolSize: "20", EnvConnectionTimeout: "30"},
			func(c *Config) {
				c.PoolMode, c.MaxIdleConns, c.MaxOpenConns, c.ConnectTimeout = Transaction, 5, 20, 30*time.Second
			}},

		// explicit environment beats URL keys
		{"env beats URL", map[string]string{
			EnvDatabaseURL: envURL + "?statement_timeout=1s&lock_timeout=1s&connection_limit=5&pool_min_conns=1" +
				"&search_path=url&application_name=url&sslmode=disable&driver=pq&connect_timeout=3" +
				"&default_transaction_isolation=serializable&default_query_exec_mode=exec&pool_timeout=1" +
				"&pool_max_conn_lifetime=1m&pool_max_conn_idle_time=1m&idle_in_transaction_session_timeout=1s",
			EnvStatementTimeout: "30s", EnvLockTimeout: "2s", EnvMaxOpenConns: "20", EnvMaxIdleConns: "4",
			EnvSearchPath: "env", EnvApplicationName: "env", EnvSSLMode: "require", EnvDriver: "pgx",
			EnvConnectTimeout: "7", EnvIsolation: "read committed", EnvPgxExecMode: "simple_protocol",
			EnvAcquireTimeout: "9", EnvConnMaxLifetime: "2h", EnvConnMaxIdleTime: "3m", EnvIdleInTransactionTimeout: "4s",
		}, func(c *Config) {
			c.StatementTimeout, c.LockTimeout, c.MaxOpenConns, c.MaxIdleConns = 30*time.Second, 2*time.Second, 20, 4
			c.SearchPath, c.ApplicationName, c.SSLMode, c.Driver = "env", "env", "require", PGX
			c.ConnectTimeout, c.Isolation, c.PgxExecMode = 7*time.Second, sql.LevelReadCommitted, ExecModeSimpleProtocol
			c.AcquireTimeout, c.ConnMaxLifetime, c.ConnMaxIdleTime, c.IdleInTransactionTimeout = 9*time.Second, 2*time.Hour, 3*time.Minute, 4*time.Second
		}},
		{"DB_POOL_MODE beats port 6543", map[string]string{EnvDatabaseURL: "postgres://u:p@h:6543/db", EnvPoolMode: "session"},
			func(c *Config) { c.PoolMode = Session }},
		{"whitespace trimmed", map[string]string{EnvDatabaseURL: "  " + envURL + "\n", EnvMaxOpenConns: " 20 ", EnvDriver: " pq "},
			func(c *Config) { c.MaxOpenConns, c.Driver = 20, PQ }},
		{"empty variables ignored", map[string]string{EnvDatabaseURL: envURL + "?driver=pq", EnvDriver: "", EnvMaxOpenConns: "",
			EnvStatementTimeout: "  ", EnvPoolMode: ""},
			func(c *Config) { c.Driver = PQ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fromEnv(envLookup(tt.env))
			if err != nil {
				t.Fatalf("fromEnv: %v", err)
			}
			want, err := Parse(strings.TrimSpace(tt.env[EnvDatabaseURL]))
			if err != nil {
				t.Fatal(err)
			}
			tt.want(&want)
			want.src.fromEnv = got.src.fromEnv // which fields the variables set: TestVariablesCarryOverToDirectURL
			if !reflect.DeepEqual(got, want) {
				t.Errorf("fromEnv\n got %#v\nwant %#v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if _, err := NewConnector(got); err != nil {
				t.Errorf("NewConnector: %v", err)
			}
		})
	}
}

func TestFromEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"no DATABASE_URL", map[string]string{EnvDriver: "pq"}, EnvDatabaseURL},
		{"blank DATABASE_URL", map[string]string{EnvDatabaseURL: "  "}, EnvDatabaseURL},
		{"malformed DATABASE_URL", map[string]string{EnvDatabaseURL: "postgres://u:ab/cd@h/db"}, "URL"},
		{"bad URL key", map[string]string{EnvDatabaseURL: envURL + "?pgbouncer=maybe"}, "pgbouncer"},
		{"unknown DB_DRIVER", map[string]string{EnvDatabaseURL: envURL, EnvDriver: "mysql"}, EnvDriver},
		{"unknown DB_POOL_MODE", map[string]string{EnvDatabaseURL: envURL, EnvPoolMode: "statement"}, EnvPoolMode},
		{"unknown DB_PGX_EXEC_MODE", map[string]string{EnvDatabaseURL: envURL, EnvPgxExecMode: "fast"}, "PgxExecMode"},
		{"unsafe DB_PGX_EXEC_MODE in transaction mode", map[string]string{EnvDatabaseURL: envURL + "?pgbouncer=true", EnvPgxExecMode: "cache_statement"}, "PgxExecMode"},
		{"DB_POOL_MODE direct against pgbouncer=true", map[string]string{EnvDatabaseURL: envURL + "?pgbouncer=true", EnvPoolMode: "direct"}, "PoolMode"},
		{"DB_MAX_OPEN_CONNS not a number", map[string]string{EnvDatabaseURL: envURL, EnvMaxOpenConns: "many"}, EnvMaxOpenConns},
		{"DB_MAX_OPEN_CONNS negative", map[string]string{EnvDatabaseURL: envURL, EnvMaxOpenConns: "-1"}, EnvMaxOpenConns},
		{"DB_MAX_IDLE_CONNS negative", map[string]string{EnvDatabaseURL: envURL, EnvMaxIdleConns: "-1"}, EnvMaxIdleConns},
		{"DB_MAX_POOL_SIZE not a number", map[string]string{EnvDatabaseURL: envURL, EnvMaxPoolSize: "1.5"}, EnvMaxPoolSize},
		{"DB_MIN_POOL_SIZE > DB_MAX_POOL_SIZE", map[string]string{EnvDatabaseURL: envURL, EnvMinPoolSize: "10", EnvMaxPoolSize: "5"}, "MaxIdleConns"},
		{"DB_MAX_IDLE_CONNS > DB_MAX_OPEN_CONNS", map[string]string{EnvDatabaseURL: envURL, EnvMaxIdleConns: "10", EnvMaxOpenConns: "5"}, "MaxIdleConns"},
		{"DB_MIN_POOL_SIZE > connection_limit", map[string]string{EnvDatabaseURL: envURL + "?connection_limit=2", EnvMinPoolSize: "3"}, "MaxIdleConns"},
		{"DB_MAX_OPEN_CONNS conflicts with DB_MAX_POOL_SIZE", map[string]string{EnvDatabaseURL: envURL, EnvMaxOpenConns: "5", EnvMaxPoolSize: "6"}, EnvMaxOpenConns},
		{"DB_MAX_IDLE_CONNS conflicts with DB_MIN_POOL_SIZE", map[string]string{EnvDatabaseURL: envURL, EnvMaxIdleConns: "2", EnvMinPoolSize: "3"}, EnvMaxIdleConns},
		{"DB_CONNECT_TIMEOUT conflicts with DB_CONNECTION_TIMEOUT", map[string]string{EnvDatabaseURL: envURL, EnvConnectTimeout: "10s", EnvConnectionTimeout: "20"}, EnvConnectTimeout},
		{"DB_CONNECTION_TIMEOUT unparsable", map[string]string{EnvDatabaseURL: envURL, EnvConnectionTimeout: "soon"}, EnvConnectionTimeout},
		{"DB_CONN_MAX_LIFETIME negative", map[string]string{EnvDatabaseURL: envURL, EnvConnMaxLifetime: "-1h"}, EnvConnMaxLifetime},
		{"DB_CONN_MAX_IDLE_TIME unparsable", map[string]string{EnvDatabaseURL: envURL, EnvConnMaxIdleTime: "later"}, EnvConnMaxIdleTime},
		{"DB_ACQUIRE_TIMEOUT negative", map[string]string{EnvDatabaseURL: envURL, EnvAcquireTimeout: "-5"}, EnvAcquireTimeout},
		{"DB_STATEMENT_TIMEOUT above PostgreSQL's limit", map[string]string{EnvDatabaseURL: envURL, EnvStatementTimeout: "720h"}, "StatementTimeout|" + EnvStatementTimeout},
		{"DB_STATEMENT_TIMEOUT unparsable", map[string]string{EnvDatabaseURL: envURL, EnvStatementTimeout: "soon"}, EnvStatementTimeout},
		{"DB_LOCK_TIMEOUT negative", map[string]string{EnvDatabaseURL: envURL, EnvLockTimeout: "-1s"}, EnvLockTimeout},
		{"DB_IDLE_IN_TRANSACTION_TIMEOUT unparsable", map[string]string{EnvDatabaseURL: envURL, EnvIdleInTransactionTimeout: "x"}, EnvIdleInTransactionTimeout},
		{"DB_SSLMODE unknown", map[string]string{EnvDatabaseURL: envURL, EnvSSLMode: "on"}, "SSLMode"},
		{"DB_ISOLATION unknown", map[string]string{EnvDatabaseURL: envURL, EnvIsolation: "snapshot"}, EnvIsolation},
		{"DIRECT_URL is a transaction pooler", map[string]string{EnvDatabaseURL: envURL, EnvDirectURL: "postgres://u:p@h:6543/db"}, "DirectURL"},
		{"DIRECT_URL malformed", map[string]string{EnvDatabaseURL: envURL, EnvDirectURL: "postgres://u:p@h/db?%zz"}, "DirectURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := fromEnv(envLookup(tt.env))
			checkField(t, err, tt.field)
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("fromEnv returned a non-zero Config with its error: %v", cfg)
			}
		})
	}
}

// A variable beats a URL's explicit 0 ("disabled") too: before, the 0 stayed
// in Settings and, applied after the field, won.
func TestFromEnvBeatsExplicitZero(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url, env string
		want     [][2]string
	}{
		{"?statement_timeout=0&lock_timeout=0", "5s", [][2]string{{"statement_timeout", "5000ms"}, {"lock_timeout", "0"}}},
		{"?statement_timeout=5s", "0", [][2]string{{"statement_timeout", "0"}}},
	}
	for _, tt := range tests {
		cfg, err := fromEnv(envLookup(map[string]string{EnvDatabaseURL: envURL + tt.url, EnvStatementTimeout: tt.env}))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.TxSettings(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("URL %s, %s=%s: TxSettings() = %q, want %q", tt.url, EnvStatementTimeout, tt.env, got, tt.want)
		}
	}
}

// FromEnv reads the process environment. Not parallel: t.Setenv.
func TestFromEnvProcessEnvironment(t *testing.T) {
	for _, k := range []string{
		EnvDatabaseURL, EnvDirectURL, EnvDriver, EnvPoolMode, EnvPgxExecMode, EnvMaxOpenConns, EnvMaxIdleConns,
		EnvMaxPoolSize, EnvMinPoolSize, EnvConnMaxLifetime, EnvConnMaxIdleTime, EnvAcquireTimeout, EnvConnectTimeout,
		EnvConnectionTimeout, EnvStatementTimeout, EnvLockTimeout, EnvIdleInTransactionTimeout, EnvSearchPath,
		EnvApplicationName, EnvSSLMode, EnvIsolation,
	} {
		t.Setenv(k, "")
	}
	if _, err := FromEnv(); err == nil {
		t.Fatal("FromEnv without DATABASE_URL: no error")
	} else {
		checkField(t, err, EnvDatabaseURL)
	}

	t.Setenv(EnvDatabaseURL, "postgres://u:p@h:6543/db?pgbouncer=true")
	t.Setenv(EnvDriver, "pq")
	t.Setenv(EnvMaxPoolSize, "20")
	t.Setenv(EnvStatementTimeout, "5s")
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Driver != PQ || cfg.PoolMode != Transaction || cfg.MaxOpenConns != 20 || cfg.StatementTimeout != 5*time.Second {
		t.Errorf("FromEnv = %v", cfg)
	}
}
