package driverconf

import (
	"database/sql"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The original system's URL and Prisma's, the two URLs that refused every
// connection before poolsafe.
const (
	originalURL = "postgres://u:p@h:5432/db?raw_sql=true&no_prepare=true&statement_cache_size=0"
	prismaURL   = "postgres://u:p@h:6543/db?pgbouncer=true&connection_limit=5"
)

// kitchenSink has every kind of key Parse knows: hints, other drivers' and
// tools' keys, field keys and unknown (server setting) keys.
const kitchenSink = "postgres://u:p@h:5432/db?pgbouncer=true&pool_mode=transaction&no_prepare=true" +
	"&statement_cache_size=0&prepare_threshold=0&prepareThreshold=0&raw_sql=true" +
	"&binary_parameters=yes&statement_cache_capacity=0&description_cache_capacity=0" +
	"&disable_prepared_binary_result=yes&sslinline=true&prefer_simple_protocol=true" +
	"&pool_health_check_period=1m&pool_max_conn_lifetime_jitter=1s&socket_timeout=5" +
	"&sslaccept=strict&sslidentity=id.p12&datestyle=ISO&client_encoding=UTF8" +
	"&default_query_exec_mode=exec&connection_limit=5&pool_timeout=10&pool_min_conns=1" +
	"&pool_max_conn_lifetime=1h&pool_max_conn_idle_time=5m&schema=s&statement_timeout=5s" +
	"&lock_timeout=1s&idle_in_transaction_session_timeout=1min&application_name=app" +
	"&fallback_application_name=fb&connect_timeout=5&sslmode=require" +
	"&default_transaction_isolation=serializable&options=-c%20work_mem%3D64MB&app.tenant_id=7"

// neverSent are keys that must never reach a driver: each one makes
// PostgreSQL (42704) or PgBouncer (08P01) refuse the connection, or changes
// how the driver talks in a way poolsafe decides itself.
var neverSent = []string{
	"pgbouncer", "pool_mode", "no_prepare", "statement_cache_size", "raw_sql",
	"prepare_threshold", "prepareThreshold", "binary_parameters", "default_query_exec_mode",
	"statement_cache_capacity", "description_cache_capacity", "connection_limit",
	"pool_timeout", "pool_max_conns", "pool_min_conns", "pool_max_conn_lifetime",
	"pool_max_conn_idle_time", "schema", "currentSchema", "driver", "options",
	"search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
	"default_transaction_isolation", "client_encoding", "work_mem", "app.tenant_id",
	"socket_timeout", "prefer_simple_protocol", "disable_prepared_binary_result",
	"sslinline", "sslaccept", "sslidentity", "datestyle", "pool_health_check_period",
	"pool_max_conn_lifetime_jitter", "fallback_application_name",
}

func mustResolve(t *testing.T, cfg Config) *resolved {
	t.Helper()
	r, err := cfg.resolve()
	if err != nil {
		t.Fatalf("resolve(%s): %v", cfg, err)
	}
	return r
}

func TestDSNContainsOnlyConnectionParameters(t *testing.T) {
	t.Parallel()
	urls := []string{
		originalURL,
		prismaURL,
		kitchenSink,
		"postgres://u:p@h/db?options=-c%20search_path%3Dx%20-c%20work_mem%3D64MB",
		"postgres://u:p@h/db?statement_timeout=5s&search_path=a&work_mem=64MB&jit=off",
		"host=h port=6543 user=u password='p w' pgbouncer=true binary_parameters=yes statement_cache_capacity=0 jit=off",
		"host=h user=u pool_mode=session search_path=x options='-c work_mem=1MB'",
	}
	allowed := map[string]bool{"sslmode": true, "connect_timeout": true, "application_name": true}
	for _, k := range keys {
		if k.use == passed {
			allowed[k.name] = true
		}
	}
	for _, u := range urls {
		for _, d := range []Driver{PGX, PQ} {
			t.Run(string(d)+"/"+u, func(t *testing.T) {
				t.Parallel()
				cfg, err := Parse(u)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				cfg.Driver = d
				dsn := mustResolve(t, cfg).dsn()
				pairs, err := splitDSN(dsn)
				if err != nil {
					t.Fatalf("dsn() %q does not re-parse: %v", dsn, err)
				}
				for _, p := range pairs {
					if !allowed[p.k] {
						t.Errorf("dsn() sends %q, which is not a libpq connection parameter: %s", p.k, dsn)
					}
				}
				for _, k := range neverSent {
					if strings.Contains(dsn, k+"=") {
						t.Errorf("dsn() contains %q: %s", k, dsn)
					}
				}
				// Each of the three extra keys appears at most once, as the
				// value poolsafe chose.
				for k := range map[string]bool{"sslmode": true, "connect_timeout": true, "application_name": true} {
					if n := strings.Count(dsn, k+"="); n > 1 {
						t.Errorf("dsn() has %s %d times: %s", k, n, dsn)
					}
				}
				if _, err := NewConnector(cfg); err != nil {
					t.Errorf("NewConnector: %v", err)
				}
			})
		}
	}
}

func TestDSN(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{originalURL, "user='u' password='p' host='h' port='5432' dbname='db' sslmode='prefer' connect_timeout='10'"},
		{prismaURL, "user='u' password='p' host='h' port='6543' dbname='db' sslmode='prefer' connect_timeout='10'"},
		{kitchenSink, "user='u' password='p' host='h' port='5432' dbname='db' sslmode='require' connect_timeout='5' application_name='app'"},
		{"postgresql://al%40ice:p%2Fw%3Ad%27q%5C@h/db",
			`user='al@ice' password='p/w:d\'q\\' host='h' dbname='db' sslmode='prefer' connect_timeout='10'`},
		{"postgres://u:p@h1:5432,h2:5433/db",
			"user='u' password='p' host='h1,h2' port='5432,5433' dbname='db' sslmode='prefer' connect_timeout='10'"},
		{"postgres://u:p@[::1]:5432/db", "user='u' password='p' host='::1' port='5432' dbname='db' sslmode='prefer' connect_timeout='10'"},
		{"postgres:///db?host=/var/run/postgresql", "dbname='db' host='/var/run/postgresql' sslmode='prefer' connect_timeout='10'"},
		{"postgres://u:p@h/db?password=q&host=h2&user=v",
			"dbname='db' host='h2' password='q' user='v' sslmode='prefer' connect_timeout='10'"},
		{"postgres://u:p@h/db?sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write",
			"user='u' password='p' host='h' dbname='db' sslrootcert='/etc/ca.pem' target_session_attrs='read-write' sslmode='prefer' connect_timeout='10'"},
		{`host=h port=5432 user=u password='S3cr3t Pa55' dbname=db application_name='my \'app\'' sslmode=require connect_timeout=3`,
			`host='h' port='5432' user='u' password='S3cr3t Pa55' dbname='db' sslmode='require' connect_timeout='3' application_name='my \'app\''`},
		{`host=h password=a\ b\\c`, `host='h' password='a b\\c' sslmode='prefer' connect_timeout='10'`},
		{"host=h connect_timeout=1.5", "host='h' sslmode='prefer' connect_timeout='2'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			// The order of the pairs is not part of the contract; the
			// keys, the values and their quoting are.
			got := mustResolve(t, Config{URL: tt.in}).dsn()
			gp, err := splitDSN(got)
			if err != nil {
				t.Fatalf("dsn() %q does not re-parse: %v", got, err)
			}
			wp, err := splitDSN(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			sortKV := func(a, b kv) int { return strings.Compare(a.k+"\x00"+a.v, b.k+"\x00"+b.v) }
			slices.SortFunc(gp, sortKV)
			slices.SortFunc(wp, sortKV)
			if !slices.Equal(gp, wp) {
				t.Errorf("dsn()\n got %s\nwant %s (in any order)", got, tt.want)
			}
			if want := len(joinDSN(wp)); len(got) != want {
				t.Errorf("dsn() = %s: %d bytes, want %d (every value quoted once)", got, len(got), want)
			}
		})
	}
}

func TestStartupSettings(t *testing.T) {
	t.Parallel()
	const q = "?statement_timeout=5s&search_path=app&lock_timeout=100&work_mem=64MB"
	want := [][2]string{{"statement_timeout", "5000ms"}, {"lock_timeout", "100ms"}, {"search_path", "app"}, {"work_mem", "64MB"}}
	tests := []struct {
		in   string
		mode PoolMode
		want [][2]string
	}{
		{"postgres://u:p@h/db" + q, Direct, want},
		{"postgres://u:p@h/db" + q + "&pool_mode=session", Session, want},
		{"postgres://u:p@h/db" + q + "&pgbouncer=true", Transaction, nil},
		{"postgres://u:p@h:6543/db" + q, Transaction, nil},
		{originalURL + "&" + q[1:], Transaction, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			r := mustResolve(t, Config{URL: tt.in})
			if r.cfg.PoolMode != tt.mode {
				t.Fatalf("PoolMode = %q, want %q", r.cfg.PoolMode, tt.mode)
			}
			got := r.startupSettings()
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Errorf("startupSettings() = %q, want %q", got, tt.want)
			}
			// The settings still apply per transaction in every mode.
			if tx := r.cfg.TxSettings(); !reflect.DeepEqual(tx, want) {
				t.Errorf("TxSettings() = %q, want %q", tx, want)
			}
		})
	}
}

// pgxConfig returns the pgx.ConnConfig inside a connector built by
// NewConnector with driver pgx.
func pgxConfig(t *testing.T, c any) pgx.ConnConfig {
	t.Helper()
	w, ok := c.(*connector)
	if !ok {
		t.Fatalf("connector is %T, want *connector", c)
	}
	f := reflect.ValueOf(w.driverConnector).FieldByName("ConnConfig")
	if !f.IsValid() {
		t.Fatalf("inner connector %T has no ConnConfig", w.driverConnector)
	}
	return f.Interface().(pgx.ConnConfig)
}

// pqSettings reads the lib/pq config inside a connector built by
// NewConnector with driver pq (unexported, so by reflection).
func pqSettings(t *testing.T, c any) (binary bool, runtime []string, options string, after *afterConnect) {
	t.Helper()
	w, ok := c.(*connector)
	if !ok {
		t.Fatalf("connector is %T, want *connector", c)
	}
	inner := w.driverConnector
	if a, ok := inner.(*afterConnect); ok {
		after, inner = a, a.Connector
	}
	v := reflect.ValueOf(inner)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	cfg := v.FieldByName("cfg")
	if !cfg.IsValid() || !cfg.FieldByName("BinaryParameters").IsValid() || !cfg.FieldByName("Runtime").IsValid() {
		t.Fatalf("lib/pq connector %T changed shape: no cfg.BinaryParameters/Runtime", inner)
	}
	for _, k := range cfg.FieldByName("Runtime").MapKeys() {
		runtime = append(runtime, k.String())
	}
	slices.Sort(runtime)
	return cfg.FieldByName("BinaryParameters").Bool(), runtime, cfg.FieldByName("Options").String(), after
}

func TestNewConnectorPgx(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		mode    pgx.QueryExecMode
		caches  bool     // statement/description caches on
		runtime []string // startup parameters that must be present
		onlyApp bool     // no startup parameter but application_name
	}{
		{originalURL, pgx.QueryExecModeExec, false, nil, true},
		{prismaURL, pgx.QueryExecModeExec, false, nil, true},
		{kitchenSink, pgx.QueryExecModeExec, false, []string{"application_name"}, true},
		{prismaURL + "&default_query_exec_mode=simple_protocol&statement_timeout=5s&work_mem=1MB",
			pgx.QueryExecModeSimpleProtocol, false, nil, true},
		{"postgres://u:p@h/db?statement_timeout=5s&search_path=a&work_mem=1MB",
			pgx.QueryExecModeExec, false, []string{"statement_timeout", "search_path", "work_mem"}, false},
		{"postgres://u:p@h/db?default_query_exec_mode=cache_statement", pgx.QueryExecModeCacheStatement, true, nil, false},
		{"postgres://u:p@h/db?default_query_exec_mode=describe_exec", pgx.QueryExecModeDescribeExec, false, nil, false},
		{"postgres://u:p@h/db?pool_mode=session&statement_timeout=5s", pgx.QueryExecModeExec, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewConnector(cfg)
			if err != nil {
				t.Fatalf("NewConnector: %v", err)
			}
			if _, ok := c.Driver().(poolsafeDriver); !ok {
				t.Errorf("Driver() = %T, want poolsafeDriver", c.Driver())
			}
			cc := pgxConfig(t, c)
			if cc.DefaultQueryExecMode != tt.mode {
				t.Errorf("DefaultQueryExecMode = %v, want %v", cc.DefaultQueryExecMode, tt.mode)
			}
			if on := cc.StatementCacheCapacity != 0 || cc.DescriptionCacheCapacity != 0; on != tt.caches {
				t.Errorf("caches = %d/%d, want on=%v", cc.StatementCacheCapacity, cc.DescriptionCacheCapacity, tt.caches)
			}
			if cc.Password != "p" || cc.User != "u" || cc.Database != "db" {
				t.Errorf("user/password/database = %q/%q/%q", cc.User, cc.Password, cc.Database)
			}
			for _, k := range tt.runtime {
				if _, ok := cc.RuntimeParams[k]; !ok {
					t.Errorf("RuntimeParams %v lacks %q", cc.RuntimeParams, k)
				}
			}
			for k := range cc.RuntimeParams {
				if tt.onlyApp && k != "application_name" {
					t.Errorf("transaction mode sends startup parameter %q (RuntimeParams %v)", k, cc.RuntimeParams)
				}
				if slices.Contains(neverSent, k) && !slices.Contains(tt.runtime, k) {
					t.Errorf("RuntimeParams has %q: %v", k, cc.RuntimeParams)
				}
			}
		})
	}
}

func TestNewConnectorPq(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		runtime    []string
		afterQuery string
		afterArgs  []any
	}{
		{originalURL, nil, "", nil},
		{prismaURL, nil, "", nil},
		{kitchenSink, nil, "", nil},
		{prismaURL + "&statement_timeout=5s&work_mem=1MB", nil, "", nil},
		{"postgres://u:p@h/db?statement_timeout=5s&search_path=a&work_mem=1MB",
			[]string{"search_path", "statement_timeout", "work_mem"}, "", nil},
		{"postgres://u:p@h/db?pool_mode=session&statement_timeout=5s&search_path=a", nil,
			"SELECT set_config($1, $2, false), set_config($3, $4, false)",
			[]any{"statement_timeout", "5000ms", "search_path", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Driver = PQ
			c, err := NewConnector(cfg)
			if err != nil {
				t.Fatalf("NewConnector: %v", err)
			}
			if _, ok := c.Driver().(poolsafeDriver); !ok {
				t.Errorf("Driver() = %T, want poolsafeDriver", c.Driver())
			}
			binary, runtime, options, after := pqSettings(t, c)
			if !binary {
				t.Error("binary_parameters is off: lib/pq would Parse/Describe then Bind in two round trips")
			}
			if !slices.Equal(runtime, tt.runtime) {
				t.Errorf("Runtime keys = %q, want %q", runtime, tt.runtime)
			}
			if options != "" {
				t.Errorf("Options = %q, want none", options)
			}
			switch {
			case tt.afterQuery == "" && after != nil:
				t.Errorf("unexpected after-connect statement %q", after.query)
			case tt.afterQuery != "" && after == nil:
				t.Errorf("no after-connect statement, want %q", tt.afterQuery)
			case after != nil:
				if after.query != tt.afterQuery || !reflect.DeepEqual(after.args, tt.afterArgs) {
					t.Errorf("after-connect = %q %v, want %q %v", after.query, after.args, tt.afterQuery, tt.afterArgs)
				}
			}
		})
	}
}

// A password with quote and backslash survives the trip through dsn() into
// both drivers' configs.
func TestNewConnectorPasswordRoundTrip(t *testing.T) {
	t.Parallel()
	const pw = `it's a \ "pass" word`
	for _, in := range []string{
		"postgres://u:it%27s%20a%20%5C%20%22pass%22%20word@h/db",
		`host=h user=u password='it\'s a \\ "pass" word'`,
	} {
		cfg, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := pgxConfig(t, c).Password; got != pw {
			t.Errorf("%s: pgx password = %q, want %q", in, got, pw)
		}
	}
}

func TestSetConfigSQL(t *testing.T) {
	t.Parallel()
	q, args := setConfigSQL([][2]string{{"statement_timeout", "5000ms"}, {"search_path", "a"}, {"app.tenant_id", "7"}}, true)
	if want := "SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true)"; q != want {
		t.Errorf("query = %q, want %q", q, want)
	}
	if want := []any{"statement_timeout", "5000ms", "search_path", "a", "app.tenant_id", "7"}; !reflect.DeepEqual(args, want) {
		t.Errorf("args = %v, want %v", args, want)
	}
}

// sql.Open("poolsafe", url) and Open work without a server.
func TestOpenWithoutNetwork(t *testing.T) {
	t.Parallel()
	for _, u := range []string{originalURL, "postgres://u:p@h:6543/db?pgbouncer=true", "postgres://u:p@h:6543/db?pgbouncer=true&driver=pq"} {
		db, err := sql.Open(DriverName, u)
		if err != nil {
			t.Errorf("sql.Open(%q): %v", u, err)
			continue
		}
		db.Close()
	}
	// Pool sizing cannot reach a *sql.DB from sql.Open: refused, not dropped.
	for _, u := range []string{prismaURL, prismaURL + "&driver=pq", originalURL + "&pool_timeout=3"} {
		_, err := sql.Open(DriverName, u)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(fe.Problem, "SetMaxOpenConns") {
			t.Errorf("sql.Open(%q) error = %v, want a FieldError that says to size the pool on the *sql.DB", u, err)
		}
	}
	if _, err := sql.Open(DriverName, "postgres://u:p@h/db?pool_mode=direct&pgbouncer=true"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("sql.Open with a conflicting URL: err = %v, want ErrInvalidConfig", err)
	}

	cfg, err := Parse(prismaURL + "&pool_min_conns=2&pool_max_conn_lifetime=1h")
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 5 {
		t.Errorf("MaxOpenConnections = %d, want 5 (connection_limit)", got)
	}
	if _, ok := db.Driver().(poolsafeDriver); !ok {
		t.Errorf("db.Driver() = %T, want poolsafeDriver", db.Driver())
	}
	if db.DriverName() != DriverName || db.Rebind("?") != "$1" {
		t.Errorf("Open: sqlx driver %q, Rebind(?) = %q", db.DriverName(), db.Rebind("?"))
	}
}

// lib/pq's and pgx's own messages say why they rejected a connection
// string; NewConnector must keep that reason (without the password) instead
// of replacing it by "(unreadable connection string)", which is what
// RedactURL returns for any text that is not a connection string.
func TestNewConnectorKeepsDriverReason(t *testing.T) {
	t.Parallel()
	for _, d := range []Driver{PGX, PQ} {
		for _, in := range []string{
			"host=h port=abc password=S3cr3t-Pa55",
			"host=h target_session_attrs=bogus password=S3cr3t-Pa55",
			// A one-letter password must not be scrubbed out of every
			// word of the message ("invalid pxxxxxrt").
			"host=h port=abc password=o",
		} {
			t.Run(string(d)+"/"+in, func(t *testing.T) {
				t.Parallel()
				key, _, _ := strings.Cut(strings.Fields(in)[1], "=")
				_, err := NewConnector(Config{URL: in, Driver: d})
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				msg := err.Error()
				if strings.Contains(msg, "S3cr3t") || strings.Contains(msg, "Pa55") || strings.Contains(msg, "password=o") {
					t.Fatalf("error contains the password: %s", msg)
				}
				if !strings.Contains(msg, key) {
					t.Errorf("error %q does not say that %s is wrong", msg, key)
				}
			})
		}
	}
}

// libpq and pgx accept a multi-host URL where only some hosts carry a port
// (postgres://h1,h2:5433/db: h1 on the default port). splitURL turns it into
// port=',5433', which pgx accepts and lib/pq rejects.
func TestNewConnectorMultiHostPartialPorts(t *testing.T) {
	t.Parallel()
	const in = "postgres://u:p@h1,h2:5433/db"
	for _, d := range []Driver{PGX, PQ} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			if _, err := NewConnector(Config{URL: in, Driver: d}); err != nil {
				t.Errorf("NewConnector(%s, %s): %v", in, d, err)
			}
		})
	}
	if _, err := pgx.ParseConfig(in); err != nil {
		t.Errorf("pgx itself rejects %s: %v", in, err)
	}
}
