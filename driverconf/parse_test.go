package driverconf_test

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
)

// fieldErrors flattens err (possibly an errors.Join tree) into its
// *driverconf.FieldError leaves.
func fieldErrors(err error) []*driverconf.FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*driverconf.FieldError
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
		return out
	}
	var fe *driverconf.FieldError
	if errors.As(err, &fe) {
		return []*driverconf.FieldError{fe}
	}
	return nil
}

// checkFieldError fails t unless err is an ErrInvalidConfig whose
// *FieldError leaves include one for field.
func checkFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a *FieldError for %q", field)
	}
	if !errors.Is(err, driverconf.ErrInvalidConfig) {
		t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
	}
	var fe *driverconf.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(%v, *FieldError) = false", err)
	}
	var fields []string
	for _, fe := range fieldErrors(err) {
		if fe.Field == field {
			if !strings.Contains(fe.Error(), field) {
				t.Errorf("message %q does not name the field %q", fe.Error(), field)
			}
			return
		}
		fields = append(fields, fe.Field)
	}
	t.Errorf("error %q: fields %q, want one for %q", err, fields, field)
}

// diffExported reports the exported fields of got and want that differ.
func diffExported(got, want driverconf.Config) []string {
	var diffs []string
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := 0; i < gv.NumField(); i++ {
		f := gv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if !reflect.DeepEqual(g, w) {
			diffs = append(diffs, f.Name+": got "+fmtAny(g)+", want "+fmtAny(w))
		}
	}
	return diffs
}

func fmtAny(v any) string {
	if d, ok := v.(time.Duration); ok {
		return d.String()
	}
	return fmt.Sprintf("%#v", v)
}

const base = "postgres://app:S3cr3t-Pa55@db.example.com:5432/app"

func TestParseFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want driverconf.Config // URL is ignored
	}{
		{"plain URL", base, driverconf.Config{}},
		{"postgresql scheme", "postgresql://app:pw@h/app", driverconf.Config{}},
		{"key=value DSN", "host=h port=5432 dbname=app user=app password=pw", driverconf.Config{}},
		{"percent-encoded user and password", "postgres://us%40er:p%2Fw%3Ad%23@h/app", driverconf.Config{}},
		{"multi-host", "postgres://u:p@h1:5432,h2:5433/app", driverconf.Config{}},
		{"IPv6 host", "postgres://u:p@[::1]:5432/app", driverconf.Config{}},

		// Prisma
		{"connection_limit", base + "?connection_limit=5", driverconf.Config{MaxOpenConns: 5}},
		{"pool_timeout seconds", base + "?pool_timeout=20", driverconf.Config{AcquireTimeout: 20 * time.Second}},
		{"pool_timeout fractional", base + "?pool_timeout=2.5", driverconf.Config{AcquireTimeout: 2500 * time.Millisecond}},
		{"pool_timeout zero", base + "?pool_timeout=0", driverconf.Config{}},
		{"schema", base + "?schema=tenant_1", driverconf.Config{SearchPath: "tenant_1"}},
		{"currentSchema", base + "?currentSchema=tenant_1", driverconf.Config{SearchPath: "tenant_1"}},
		{"search_path beats schema", base + "?schema=b&search_path=a", driverconf.Config{SearchPath: "a"}},

		// pgxpool
		{"pool_max_conns", base + "?pool_max_conns=20", driverconf.Config{MaxOpenConns: 20}},
		{"pool_min_conns", base + "?pool_min_conns=2", driverconf.Config{MaxIdleConns: 2}},
		{"pool_max_conn_lifetime", base + "?pool_max_conn_lifetime=1h", driverconf.Config{ConnMaxLifetime: time.Hour}},
		{"pool_max_conn_idle_time", base + "?pool_max_conn_idle_time=90s", driverconf.Config{ConnMaxIdleTime: 90 * time.Second}},
		{"pgxpool together", base + "?pool_max_conns=8&pool_min_conns=8&pool_max_conn_lifetime=30m&pool_max_conn_idle_time=1m",
			driverconf.Config{MaxOpenConns: 8, MaxIdleConns: 8, ConnMaxLifetime: 30 * time.Minute, ConnMaxIdleTime: time.Minute}},

		// driver
		{"driver=pgx", base + "?driver=pgx", driverconf.Config{Driver: driverconf.PGX}},
		{"driver=pq", base + "?driver=pq", driverconf.Config{Driver: driverconf.PQ}},
		{"driver=lib/pq", base + "?driver=lib%2Fpq", driverconf.Config{Driver: driverconf.PQ}},
		{"driver=PGX upper", base + "?driver=PGX", driverconf.Config{Driver: driverconf.PGX}},
		{"driver in DSN", "host=h driver=pq", driverconf.Config{Driver: driverconf.PQ}},

		// timeouts
		{"statement_timeout bare ms", base + "?statement_timeout=5000", driverconf.Config{StatementTimeout: 5 * time.Second}},
		{"statement_timeout 5s", base + "?statement_timeout=5s", driverconf.Config{StatementTimeout: 5 * time.Second}},
		{"statement_timeout 1min", base + "?statement_timeout=1min", driverconf.Config{StatementTimeout: time.Minute}},
		{"statement_timeout 250ms", base + "?statement_timeout=250ms", driverconf.Config{StatementTimeout: 250 * time.Millisecond}},
		{"statement_timeout 1.5s", base + "?statement_timeout=1.5s", driverconf.Config{StatementTimeout: 1500 * time.Millisecond}},
		{"statement_timeout 500us", base + "?statement_timeout=500us", driverconf.Config{StatementTimeout: 500 * time.Microsecond}},
		{"statement_timeout 2h", base + "?statement_timeout=2h", driverconf.Config{StatementTimeout: 2 * time.Hour}},
		{"statement_timeout 1d", base + "?statement_timeout=1d", driverconf.Config{StatementTimeout: 24 * time.Hour}},
		{"statement_timeout space before unit", base + "?statement_timeout=5%20s", driverconf.Config{StatementTimeout: 5 * time.Second}},
		{"statement_timeout Go syntax", base + "?statement_timeout=1m30s", driverconf.Config{StatementTimeout: 90 * time.Second}},
		{"statement_timeout 0", base + "?statement_timeout=0", driverconf.Config{Settings: map[string]string{"statement_timeout": "0"}}}, // explicit 0: disabled, sent,
		{"lock_timeout", base + "?lock_timeout=2s", driverconf.Config{LockTimeout: 2 * time.Second}},
		{"lock_timeout bare", base + "?lock_timeout=100", driverconf.Config{LockTimeout: 100 * time.Millisecond}},
		{"idle_in_transaction_session_timeout", base + "?idle_in_transaction_session_timeout=60000",
			driverconf.Config{IdleInTransactionTimeout: time.Minute}},
		{"connect_timeout seconds", base + "?connect_timeout=7", driverconf.Config{ConnectTimeout: 7 * time.Second}},

		// strings
		{"search_path", base + "?search_path=tenant%2Cpublic", driverconf.Config{SearchPath: "tenant,public"}},
		{"application_name", base + "?application_name=my%20worker", driverconf.Config{ApplicationName: "my worker"}},
		{"plus sign in a value (libpq and pgx keep it)", base + "?application_name=my+worker", driverconf.Config{ApplicationName: "my+worker"}},
		{"fallback_application_name", base + "?fallback_application_name=fb", driverconf.Config{ApplicationName: "fb"}},
		{"application_name beats fallback", base + "?application_name=a&fallback_application_name=fb", driverconf.Config{ApplicationName: "a"}},
		{"sslmode", base + "?sslmode=require", driverconf.Config{SSLMode: "require"}},
		{"sslmode verify-full", base + "?sslmode=verify-full", driverconf.Config{SSLMode: "verify-full"}},
		{"client_encoding UTF8 accepted", base + "?client_encoding=UTF8", driverconf.Config{}},
		{"client_encoding utf-8 accepted", base + "?client_encoding=utf-8", driverconf.Config{}},

		// isolation
		{"isolation serializable", base + "?default_transaction_isolation=serializable", driverconf.Config{Isolation: sql.LevelSerializable}},
		{"isolation repeatable read", base + "?default_transaction_isolation=repeatable%20read", driverconf.Config{Isolation: sql.LevelRepeatableRead}},
		{"isolation READ_COMMITTED", base + "?default_transaction_isolation=READ_COMMITTED", driverconf.Config{Isolation: sql.LevelReadCommitted}},
		{"isolation read-uncommitted", base + "?default_transaction_isolation=read-uncommitted", driverconf.Config{Isolation: sql.LevelReadUncommitted}},

		// pgx exec mode
		{"default_query_exec_mode exec", base + "?default_query_exec_mode=exec", driverconf.Config{PgxExecMode: driverconf.ExecModeExec}},
		{"default_query_exec_mode simple_protocol", base + "?default_query_exec_mode=simple_protocol",
			driverconf.Config{PgxExecMode: driverconf.ExecModeSimpleProtocol}},
		{"default_query_exec_mode read like DB_PGX_EXEC_MODE", base + "?default_query_exec_mode=Simple_Protocol",
			driverconf.Config{PgxExecMode: driverconf.ExecModeSimpleProtocol}},
		{"default_query_exec_mode cache_statement direct", base + "?default_query_exec_mode=cache_statement",
			driverconf.Config{PgxExecMode: driverconf.ExecModeCacheStatement}},

		// options
		{"options search_path and work_mem", base + "?options=-c%20search_path%3Dx%20-c%20work_mem%3D64MB",
			driverconf.Config{SearchPath: "x", Settings: map[string]string{"work_mem": "64MB"}}},
		{"options -cname=value and --name=value", base + "?options=-cstatement_timeout%3D5s%20--lock-timeout%3D1s",
			driverconf.Config{StatementTimeout: 5 * time.Second, LockTimeout: time.Second}},
		{"options escaped space in value", `host=h options='-c search_path=a\\,\\ b'`,
			driverconf.Config{SearchPath: "a, b"}},

		// unknown valid keys become Settings
		{"unknown keys to Settings", base + "?work_mem=64MB&app.tenant_id=42",
			driverconf.Config{Settings: map[string]string{"work_mem": "64MB", "app.tenant_id": "42"}}},
		{"unknown key in DSN", "host=h jit=off", driverconf.Config{Settings: map[string]string{"jit": "off"}}},

		// other driver's and tools' keys are removed and change nothing
		{"foreign keys removed", base + "?binary_parameters=yes&statement_cache_capacity=0&description_cache_capacity=0" +
			"&disable_prepared_binary_result=yes&prefer_simple_protocol=true&pool_health_check_period=1m" +
			"&socket_timeout=5&sslaccept=strict&datestyle=ISO", driverconf.Config{}},

		// DSN forms with quoting and escapes
		{"DSN quoted values", `host=h user=u password='S3cr3t Pa55' application_name='it\'s a \\ test' pgbouncer=true`,
			driverconf.Config{ApplicationName: `it's a \ test`, PoolMode: driverconf.Transaction}},
		{"DSN unquoted backslash escape", `host=h search_path=a\ b`, driverconf.Config{SearchPath: "a b"}},
		{"DSN spaces around =", `host = h statement_timeout = 5s`, driverconf.Config{StatementTimeout: 5 * time.Second}},
		{"DSN empty quoted value", `host=h application_name=''`, driverconf.Config{}},
		{"DSN tabs and newlines", "host=h\n\tsslmode=disable\r\n", driverconf.Config{SSLMode: "disable"}},
		{"surrounding whitespace", "  " + base + "?sslmode=disable  ", driverconf.Config{SSLMode: "disable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := driverconf.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.URL != tt.in {
				t.Errorf("URL = %q, want the input unchanged", got.URL)
			}
			got.URL = ""
			for _, d := range diffExported(got, tt.want) {
				t.Error(d)
			}
		})
	}
}

func TestParsePoolMode(t *testing.T) {
	t.Parallel()
	const h = "postgres://u:p@h/db"
	tests := []struct {
		in string
		// parsed is what Parse sets ("" when nothing says), defaulted what
		// WithDefaults makes of it.
		parsed, defaulted driverconf.PoolMode
	}{
		{h, "", driverconf.Direct},
		{h + "?pool_mode=transaction", driverconf.Transaction, driverconf.Transaction},
		{h + "?pool_mode=session", driverconf.Session, driverconf.Session},
		{h + "?pool_mode=direct", driverconf.Direct, driverconf.Direct},
		{h + "?pool_mode=TRANSACTION", driverconf.Transaction, driverconf.Transaction},
		{h + "?pgbouncer=true", driverconf.Transaction, driverconf.Transaction},
		{h + "?pgbouncer=1", driverconf.Transaction, driverconf.Transaction},
		{h + "?pgbouncer=false", "", driverconf.Direct},
		{"postgres://u:p@h:6543/db", driverconf.Transaction, driverconf.Transaction},
		{"postgres://u:p@h:5432/db", "", driverconf.Direct},
		{"postgres://u:p@h1:5432,h2:6543/db", driverconf.Transaction, driverconf.Transaction},
		{"host=h port=6543", driverconf.Transaction, driverconf.Transaction},
		{"host=h port=5432", "", driverconf.Direct},
		{h + "?port=6543", driverconf.Transaction, driverconf.Transaction},
		{h + "?no_prepare=true", driverconf.Transaction, driverconf.Transaction},
		{h + "?no_prepare=false", "", driverconf.Direct},
		{h + "?statement_cache_size=0", driverconf.Transaction, driverconf.Transaction},
		{h + "?statement_cache_size=100", "", driverconf.Direct},
		{h + "?prepare_threshold=0", driverconf.Transaction, driverconf.Transaction},
		{h + "?prepare_threshold=5", "", driverconf.Direct},
		{h + "?prepareThreshold=0", driverconf.Transaction, driverconf.Transaction},
		{h + "?prepareThreshold=5", "", driverconf.Direct},
		{h + "?raw_sql=true", driverconf.Transaction, driverconf.Transaction},
		{h + "?raw_sql=false", "", driverconf.Direct},
		{h + "?raw_sql=true&no_prepare=true&statement_cache_size=0", driverconf.Transaction, driverconf.Transaction},
		{"postgres://u:p@h:6543/db?pgbouncer=true&connection_limit=5", driverconf.Transaction, driverconf.Transaction},
		{h + "?pool_mode=transaction&pgbouncer=true", driverconf.Transaction, driverconf.Transaction},
		{h + "?pool_mode=direct&pgbouncer=false", driverconf.Direct, driverconf.Direct},
		{"postgres://u:p@h:6543/db?pool_mode=session", driverconf.Session, driverconf.Session},
		{"host=h pgbouncer=true", driverconf.Transaction, driverconf.Transaction},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg.PoolMode != tt.parsed {
				t.Errorf("Parse: PoolMode = %q, want %q", cfg.PoolMode, tt.parsed)
			}
			if got := cfg.WithDefaults().PoolMode; got != tt.defaulted {
				t.Errorf("WithDefaults: PoolMode = %q, want %q", got, tt.defaulted)
			}
			// Inference also works on a hand-built Config.
			if got := (driverconf.Config{URL: tt.in}).WithDefaults().PoolMode; got != tt.defaulted {
				t.Errorf("Config{URL}.WithDefaults: PoolMode = %q, want %q", got, tt.defaulted)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, field string
	}{
		{"empty", "", "URL"},
		{"blank", "   ", "URL"},
		{"NUL byte", "host=h\x00", "URL"},
		{"wrong scheme", "mysql://u:p@h/db", "URL"},
		{"malformed URL", "postgres://u:p@h:port/db", "URL"},
		{"unescaped slash in password", "postgres://u:ab/cd@h/db", "URL"},
		{"malformed query", base + "?%zz", "URL"},
		{"port out of range", "postgres://u:p@h:99999/db", "port"},
		{"DSN word without =", "host=h oops", "URL"},
		{"DSN unterminated quote", "host=h password='abc", "password"},
		{"unknown driver", base + "?driver=mysql", "driver"},
		{"unknown pool mode", base + "?pool_mode=bogus", "pool_mode"},
		{"statement pooling", base + "?pool_mode=statement", "pool_mode"},
		{"direct conflicts with pgbouncer", base + "?pool_mode=direct&pgbouncer=true", "pool_mode"},
		{"session conflicts with no_prepare", base + "?pool_mode=session&no_prepare=true", "pool_mode"},
		{"direct conflicts with statement_cache_size=0", "host=h pool_mode=direct statement_cache_size=0", "pool_mode"},
		{"pgbouncer=maybe", base + "?pgbouncer=maybe", "pgbouncer"},
		{"no_prepare=maybe", base + "?no_prepare=maybe", "no_prepare"},
		{"raw_sql=maybe", base + "?raw_sql=maybe", "raw_sql"},
		{"statement_cache_size negative", base + "?statement_cache_size=-1", "statement_cache_size"},
		{"prepare_threshold not a number", base + "?prepare_threshold=x", "prepare_threshold"},
		{"prepareThreshold not a number", base + "?prepareThreshold=x", "prepareThreshold"},
		{"key twice in URL", base + "?sslmode=disable&sslmode=require", "sslmode"},
		{"key twice in DSN", "host=h sslmode=disable sslmode=require", "sslmode"},
		{"hint twice in DSN", "host=h pgbouncer=true pgbouncer=true", "pgbouncer"},
		{"client_encoding latin1", base + "?client_encoding=latin1", "client_encoding"},
		{"statement_timeout negative bare", base + "?statement_timeout=-5", "statement_timeout"},
		{"statement_timeout negative unit", base + "?statement_timeout=-5s", "statement_timeout"},
		{"statement_timeout unparsable", base + "?statement_timeout=abc", "statement_timeout"},
		{"statement_timeout unknown unit", base + "?statement_timeout=5 fortnights", "statement_timeout"},
		{"lock_timeout unparsable", base + "?lock_timeout=soon", "lock_timeout"},
		{"idle_in_transaction negative", base + "?idle_in_transaction_session_timeout=-1s", "idle_in_transaction_session_timeout"},
		{"connect_timeout negative", base + "?connect_timeout=-1", "connect_timeout"},
		{"connect_timeout unparsable", base + "?connect_timeout=ten", "connect_timeout"},
		{"pool_timeout negative", base + "?pool_timeout=-2", "pool_timeout"},
		{"pool_max_conn_lifetime negative", base + "?pool_max_conn_lifetime=-1m", "pool_max_conn_lifetime"},
		{"pool_max_conn_lifetime bare number", base + "?pool_max_conn_lifetime=30", "pool_max_conn_lifetime"},
		{"pool_max_conn_idle_time unparsable", base + "?pool_max_conn_idle_time=soon", "pool_max_conn_idle_time"},
		{"connection_limit negative", base + "?connection_limit=-1", "connection_limit"},
		{"pool_max_conns not a number", base + "?pool_max_conns=many", "pool_max_conns"},
		{"pool_min_conns negative", base + "?pool_min_conns=-3", "pool_min_conns"},
		{"connection_limit and pool_max_conns", base + "?connection_limit=5&pool_max_conns=5", "connection_limit"},
		{"unknown isolation", base + "?default_transaction_isolation=snapshot", "default_transaction_isolation"},
		{"invalid setting name", base + "?bad-key=1", "bad-key"},
		{"options not -c", base + "?options=-x", "options"},
		{"options without =", base + "?options=-c%20work_mem", "options"},
		{"options lone backslash", `host=h options='-c a=b\\'`, "options"},
		{"options invalid setting name", base + "?options=-c%20bad%21name%3D1", "bad!name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(tt.in)
			checkFieldError(t, err, tt.field)
			if !reflect.DeepEqual(cfg, driverconf.Config{}) {
				t.Errorf("Parse returned a non-zero Config with its error: %v", cfg)
			}
			// The same error comes back from Validate and NewConnector for a
			// hand-built Config.
			checkFieldError(t, driverconf.Config{URL: tt.in}.Validate(), tt.field)
			_, err = driverconf.NewConnector(driverconf.Config{URL: tt.in})
			checkFieldError(t, err, tt.field)
		})
	}
}

// Parse must reject duration values that do not fit a time.Duration instead
// of storing a garbage (negative, or on other architectures saturated)
// duration. strconv.ParseFloat accepts "NaN" and "Inf", and a large finite
// number overflows time.Duration(f * float64(unit)).
func TestParseRejectsNonFiniteOrOverflowingDurations(t *testing.T) {
	t.Parallel()
	tests := []struct{ query, field string }{
		{"connect_timeout=NaN", "connect_timeout"},
		{"connect_timeout=Inf", "connect_timeout"},
		{"connect_timeout=1e10", "connect_timeout"},
		{"pool_timeout=NaN", "pool_timeout"},
		{"pool_timeout=%2BInf", "pool_timeout"},
		{"statement_timeout=99999999999999999999", "statement_timeout"},
		{"lock_timeout=9999999999999d", "lock_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(base + "?" + tt.query)
			if err == nil {
				t.Fatalf("Parse accepted %s: %v", tt.query, cfg)
			}
			checkFieldError(t, err, tt.field)
		})
	}
}

func TestValidateErrors(t *testing.T) {
	t.Parallel()
	const h = "postgres://u:p@h/db"
	tests := []struct {
		name  string
		cfg   driverconf.Config
		field string
	}{
		{"unknown Driver", driverconf.Config{URL: h, Driver: "mysql"}, "Driver"},
		{"unknown PoolMode", driverconf.Config{URL: h, PoolMode: "bogus"}, "PoolMode"},
		{"PoolMode statement", driverconf.Config{URL: h, PoolMode: "statement"}, "PoolMode"},
		{"PoolMode direct against pgbouncer=true", driverconf.Config{URL: h + "?pgbouncer=true", PoolMode: driverconf.Direct}, "PoolMode"},
		{"PoolMode session against no_prepare", driverconf.Config{URL: h + "?no_prepare=true", PoolMode: driverconf.Session}, "PoolMode"},
		{"min > max from URL", driverconf.Config{URL: h + "?pool_min_conns=10&pool_max_conns=5"}, "MaxIdleConns"},
		{"min > max by hand", driverconf.Config{URL: h, MaxOpenConns: 2, MaxIdleConns: 3}, "MaxIdleConns"},
		{"negative MaxOpenConns", driverconf.Config{URL: h, MaxOpenConns: -1}, "MaxOpenConns"},
		{"negative MaxIdleConns", driverconf.Config{URL: h, MaxIdleConns: -1}, "MaxIdleConns"},
		{"negative StatementTimeout", driverconf.Config{URL: h, StatementTimeout: -time.Second}, "StatementTimeout"},
		{"negative LockTimeout", driverconf.Config{URL: h, LockTimeout: -1}, "LockTimeout"},
		{"negative IdleInTransactionTimeout", driverconf.Config{URL: h, IdleInTransactionTimeout: -1}, "IdleInTransactionTimeout"},
		{"negative AcquireTimeout", driverconf.Config{URL: h, AcquireTimeout: -1}, "AcquireTimeout"},
		{"negative ConnectTimeout", driverconf.Config{URL: h, ConnectTimeout: -1}, "ConnectTimeout"},
		{"negative ConnMaxLifetime", driverconf.Config{URL: h, ConnMaxLifetime: -1}, "ConnMaxLifetime"},
		{"negative ConnMaxIdleTime", driverconf.Config{URL: h, ConnMaxIdleTime: -1}, "ConnMaxIdleTime"},
		{"unknown sslmode from URL", driverconf.Config{URL: h + "?sslmode=bogus"}, "SSLMode"},
		{"unknown SSLMode", driverconf.Config{URL: h, SSLMode: "on"}, "SSLMode"},
		{"snapshot isolation", driverconf.Config{URL: h, Isolation: sql.LevelSnapshot}, "Isolation"},
		{"linearizable isolation", driverconf.Config{URL: h, Isolation: sql.LevelLinearizable}, "Isolation"},
		{"cache_statement in transaction mode", driverconf.Config{URL: h + "?pgbouncer=true&default_query_exec_mode=cache_statement"}, "PgxExecMode"},
		{"cache_describe via port 6543", driverconf.Config{URL: "postgres://u:p@h:6543/db", PgxExecMode: driverconf.ExecModeCacheDescribe}, "PgxExecMode"},
		{"describe_exec in transaction mode", driverconf.Config{URL: h, PoolMode: driverconf.Transaction, PgxExecMode: driverconf.ExecModeDescribeExec}, "PgxExecMode"},
		{"unknown exec mode", driverconf.Config{URL: h + "?default_query_exec_mode=fast"}, "PgxExecMode"},
		{"hostaddr with pgx", driverconf.Config{URL: h + "?hostaddr=10.0.0.1"}, "hostaddr"},
		{"load_balance_hosts with pgx", driverconf.Config{URL: h + "?load_balance_hosts=random"}, "load_balance_hosts"},
		{"sslpassword with pq", driverconf.Config{URL: h + "?driver=pq&sslpassword=x"}, "sslpassword"},
		{"channel_binding with pq", driverconf.Config{URL: h + "?channel_binding=require", Driver: driverconf.PQ}, "channel_binding"},
		{"require_auth with pq", driverconf.Config{URL: "host=h require_auth=scram-sha-256 driver=pq"}, "require_auth"},
		{"DirectURL is a transaction pooler (port)", driverconf.Config{URL: h, DirectURL: "postgres://u:p@h:6543/db"}, "DirectURL"},
		{"DirectURL is a transaction pooler (hint)", driverconf.Config{URL: h, DirectURL: h + "?pgbouncer=true"}, "DirectURL"},
		{"DirectURL malformed", driverconf.Config{URL: h, DirectURL: "postgres://u:p@h:port/db"}, "DirectURL"},
		{"bad Settings name", driverconf.Config{URL: h, Settings: map[string]string{"bad name": "1"}}, "Settings"},
		{"NUL in Settings value", driverconf.Config{URL: h, Settings: map[string]string{"work_mem": "1\x00"}}, "Settings"},
		{"NUL in SearchPath", driverconf.Config{URL: h, SearchPath: "a\x00"}, "ApplicationName/SearchPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkFieldError(t, tt.cfg.Validate(), tt.field)
			_, err := driverconf.NewConnector(tt.cfg)
			checkFieldError(t, err, tt.field)
			db, err := driverconf.Open(tt.cfg)
			if db != nil {
				db.Close()
			}
			checkFieldError(t, err, tt.field)
		})
	}
}

func TestValidateAcceptsUnsafeExecModesOutsideTransactionMode(t *testing.T) {
	t.Parallel()
	for _, m := range []driverconf.PgxExecMode{driverconf.ExecModeCacheStatement, driverconf.ExecModeCacheDescribe, driverconf.ExecModeDescribeExec} {
		for _, pm := range []driverconf.PoolMode{driverconf.Direct, driverconf.Session} {
			cfg := driverconf.Config{URL: "postgres://u:p@h/db", PoolMode: pm, PgxExecMode: m}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s/%s: %v", pm, m, err)
			}
		}
	}
}

func TestValidateJoinsErrors(t *testing.T) {
	t.Parallel()
	cfg := driverconf.Config{
		URL:              "postgres://u:p@h/db?hostaddr=10.0.0.1",
		Driver:           "mysql",
		SSLMode:          "bogus",
		MaxOpenConns:     -1,
		StatementTimeout: -time.Second,
		Isolation:        sql.LevelSnapshot,
		DirectURL:        "postgres://u:p@h:6543/db",
	}
	err := cfg.Validate()
	if !errors.Is(err, driverconf.ErrInvalidConfig) {
		t.Fatalf("errors.Is(%v, ErrInvalidConfig) = false", err)
	}
	got := map[string]bool{}
	for _, fe := range fieldErrors(err) {
		got[fe.Field] = true
	}
	for _, f := range []string{"Driver", "SSLMode", "MaxOpenConns", "StatementTimeout", "Isolation", "DirectURL"} {
		if !got[f] {
			t.Errorf("joined error lacks field %q: %v", f, err)
		}
	}
	if n := len(fieldErrors(err)); n < 6 {
		t.Errorf("got %d field errors, want at least 6: %v", n, err)
	}
}

func TestFieldError(t *testing.T) {
	t.Parallel()
	var err error = &driverconf.FieldError{Field: "SSLMode", Problem: "is wrong"}
	if got, want := err.Error(), "driverconf: SSLMode: is wrong"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, driverconf.ErrInvalidConfig) {
		t.Error("FieldError does not match ErrInvalidConfig")
	}
	if errors.Is(err, errors.New("other")) {
		t.Error("FieldError matches an unrelated error")
	}
}

func TestNotesMentionRemovedKeys(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, key string }{
		{base + "?pgbouncer=true", "pgbouncer"},
		{base + "?pool_mode=transaction", "pool_mode"},
		{base + "?no_prepare=true", "no_prepare"},
		{base + "?statement_cache_size=0", "statement_cache_size"},
		{base + "?prepare_threshold=0", "prepare_threshold"},
		{base + "?prepareThreshold=0", "prepareThreshold"},
		{base + "?raw_sql=true", "raw_sql"},
		{base + "?raw_sql=false", "raw_sql"},
		{base + "?binary_parameters=yes", "binary_parameters"},
		{base + "?statement_cache_capacity=0", "statement_cache_capacity"},
		{base + "?description_cache_capacity=0", "description_cache_capacity"},
		{base + "?prefer_simple_protocol=true", "prefer_simple_protocol"},
		{base + "?socket_timeout=5", "socket_timeout"},
		{base + "?work_mem=64MB", "work_mem"},
		{base + "?options=-c%20work_mem%3D64MB", "options"},
		{"postgres://u:p@h:6543/db", "6543"},
		{"host=h binary_parameters=yes", "binary_parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			notes := cfg.Notes()
			if !strings.Contains(strings.Join(notes, "\n"), tt.key) {
				t.Errorf("Notes() = %q, want a line mentioning %q", notes, tt.key)
			}
			// Notes returns a copy.
			if len(notes) > 0 {
				notes[0] = "changed"
				if cfg.Notes()[0] == "changed" {
					t.Error("Notes() exposes the Config's own slice")
				}
			}
		})
	}
	cfg, err := driverconf.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Notes(); len(n) != 0 {
		t.Errorf("plain URL: Notes() = %q, want none", n)
	}
}

// Config.Notes is documented as "one line per key, what Parse or FromEnv did
// with the connection-string keys it removed or moved into fields". Keys
// moved into fields are removed from what the driver sees too, so a
// surprising URL can only be explained if they are noted.
func TestNotesMentionKeysMovedIntoFields(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		"connection_limit=5", "pool_timeout=10", "schema=s", "pool_max_conns=5", "pool_min_conns=1",
		"pool_max_conn_lifetime=1h", "pool_max_conn_idle_time=1m", "statement_timeout=5s",
		"default_query_exec_mode=exec", "driver=pq",
	} {
		key, _, _ := strings.Cut(q, "=")
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			cfg, err := driverconf.Parse(base + "?" + q)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if notes := cfg.Notes(); !strings.Contains(strings.Join(notes, "\n"), key) {
				t.Errorf("Notes() = %q, want a line saying what happened to %q", notes, key)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	got := driverconf.Config{URL: "postgres://u:p@h/db"}.WithDefaults()
	want := driverconf.Config{
		URL:             "postgres://u:p@h/db",
		Driver:          driverconf.PGX,
		PoolMode:        driverconf.Direct,
		PgxExecMode:     driverconf.ExecModeExec,
		MaxOpenConns:    10,
		MaxIdleConns:    5,
		ConnMaxLifetime: 30 * time.Minute,
		ConnMaxIdleTime: 5 * time.Minute,
		ConnectTimeout:  10 * time.Second,
		SSLMode:         "prefer",
		Isolation:       sql.LevelReadCommitted,
	}
	for _, d := range diffExported(got, want) {
		t.Error(d)
	}
	// The exported constants say the same.
	if driverconf.DefaultDriver != driverconf.PGX || driverconf.DefaultMaxOpenConns != 10 ||
		driverconf.DefaultMaxIdleConns != 5 || driverconf.DefaultConnMaxLifetime != 30*time.Minute ||
		driverconf.DefaultConnMaxIdleTime != 5*time.Minute || driverconf.DefaultConnectTimeout != 10*time.Second ||
		driverconf.DefaultSSLMode != "prefer" || driverconf.DefaultIsolation != sql.LevelReadCommitted {
		t.Error("Default* constants changed")
	}

	t.Run("inferred transaction", func(t *testing.T) {
		t.Parallel()
		if m := (driverconf.Config{URL: "postgres://u:p@h:6543/db"}).WithDefaults().PoolMode; m != driverconf.Transaction {
			t.Errorf("PoolMode = %q, want transaction", m)
		}
	})
	t.Run("unreadable URL falls back to direct", func(t *testing.T) {
		t.Parallel()
		if m := (driverconf.Config{URL: "postgres://u:p@h:port/db"}).WithDefaults().PoolMode; m != driverconf.Direct {
			t.Errorf("PoolMode = %q, want direct", m)
		}
	})
	t.Run("MaxIdleConns capped by MaxOpenConns", func(t *testing.T) {
		t.Parallel()
		c := driverconf.Config{URL: "postgres://h/db", MaxOpenConns: 3}.WithDefaults()
		if c.MaxIdleConns != 3 {
			t.Errorf("MaxIdleConns = %d, want 3", c.MaxIdleConns)
		}
	})
	t.Run("explicit values kept", func(t *testing.T) {
		t.Parallel()
		in := driverconf.Config{
			URL: "postgres://u:p@h:6543/db", Driver: driverconf.PQ, PoolMode: driverconf.Session,
			PgxExecMode: driverconf.ExecModeSimpleProtocol, MaxOpenConns: 50, MaxIdleConns: 20,
			ConnMaxLifetime: time.Hour, ConnMaxIdleTime: time.Minute, ConnectTimeout: 3 * time.Second,
			SSLMode: "require", Isolation: sql.LevelSerializable, StatementTimeout: time.Second,
			Settings: map[string]string{"work_mem": "1MB"},
		}
		for _, d := range diffExported(in.WithDefaults(), in) {
			t.Error(d)
		}
	})
	t.Run("does not validate", func(t *testing.T) {
		t.Parallel()
		c := driverconf.Config{URL: "postgres://h/db", Driver: "mysql", MaxOpenConns: -1}.WithDefaults()
		if c.Driver != "mysql" || c.MaxOpenConns != -1 {
			t.Errorf("WithDefaults changed invalid values: %v", c)
		}
	})
}

func TestTxSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  driverconf.Config
		want [][2]string
	}{
		{"none", driverconf.Config{}, nil},
		{"all in order", driverconf.Config{
			Settings:                 map[string]string{"work_mem": "64MB", "app.tenant_id": "42"},
			SearchPath:               "tenant,public",
			IdleInTransactionTimeout: time.Minute,
			LockTimeout:              1500 * time.Millisecond,
			StatementTimeout:         5 * time.Second,
		}, [][2]string{
			{"statement_timeout", "5000ms"},
			{"lock_timeout", "1500ms"},
			{"idle_in_transaction_session_timeout", "60000ms"},
			{"search_path", "tenant,public"},
			{"app.tenant_id", "42"},
			{"work_mem", "64MB"},
		}},
		{"sub-millisecond rounds up to 1ms", driverconf.Config{StatementTimeout: 500 * time.Microsecond},
			[][2]string{{"statement_timeout", "1ms"}}},
		{"fractional ms truncated", driverconf.Config{LockTimeout: 2500 * time.Microsecond},
			[][2]string{{"lock_timeout", "2ms"}}},
		{"zero and negative timeouts omitted", driverconf.Config{StatementTimeout: 0, LockTimeout: -time.Second, SearchPath: "s"},
			[][2]string{{"search_path", "s"}}},
		{"hours", driverconf.Config{StatementTimeout: 2 * time.Hour}, [][2]string{{"statement_timeout", "7200000ms"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.cfg.TxSettings()
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("TxSettings() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTxSettingsFromParse(t *testing.T) {
	t.Parallel()
	cfg, err := driverconf.Parse(base + "?statement_timeout=5s&lock_timeout=1min&search_path=a&work_mem=64MB&options=-c%20jit%3Doff")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{
		{"statement_timeout", "5000ms"},
		{"lock_timeout", "60000ms"},
		{"search_path", "a"},
		{"jit", "off"},
		{"work_mem", "64MB"},
	}
	if got := cfg.TxSettings(); !reflect.DeepEqual(got, want) {
		t.Errorf("TxSettings() = %q, want %q", got, want)
	}
}

// Fields set by hand win over URL keys; URL settings merge with Settings.
func TestExplicitFieldsBeatURL(t *testing.T) {
	t.Parallel()
	cfg := driverconf.Config{
		URL:              base + "?statement_timeout=1s&search_path=url&connection_limit=3&work_mem=1MB&jit=off",
		StatementTimeout: 9 * time.Second,
		SearchPath:       "mine",
		MaxOpenConns:     7,
		Settings:         map[string]string{"work_mem": "2MB"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"statement_timeout", "9000ms"}, {"search_path", "mine"}, {"work_mem", "2MB"}}
	if got := cfg.TxSettings(); !reflect.DeepEqual(got, want) {
		// TxSettings reads only the Config's own fields.
		t.Errorf("TxSettings() = %q, want %q", got, want)
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 7 {
		t.Errorf("MaxOpenConnections = %d, want 7", got)
	}
}

// PostgreSQL timeouts are int milliseconds (at most 2147483647ms, about 24.8
// days). Parse rejects larger URL values, but a Config with the same value
// set by hand (or by FromEnv) passes Validate, and then every
// set_config('statement_timeout', '2592000000ms', true) — or, in direct
// mode, every connection's startup — fails on the server.
func TestValidateRejectsTimeoutsPostgresCannotHold(t *testing.T) {
	t.Parallel()
	const tooLong = 30 * 24 * time.Hour
	if _, err := driverconf.Parse("postgres://h/db?statement_timeout=30d"); err == nil {
		t.Error("Parse accepted statement_timeout=30d")
	}
	tests := []struct {
		field string
		cfg   driverconf.Config
	}{
		{"StatementTimeout", driverconf.Config{URL: "postgres://h/db", StatementTimeout: tooLong}},
		{"LockTimeout", driverconf.Config{URL: "postgres://h/db", LockTimeout: tooLong}},
		{"IdleInTransactionTimeout", driverconf.Config{URL: "postgres://h/db", IdleInTransactionTimeout: tooLong}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			checkFieldError(t, tt.cfg.Validate(), tt.field)
		})
	}
}
