package driverconf

import (
	"database/sql"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A key is one connection-string key poolsafe knows, and what happens to it.
// Parsing, stripping, Config.Notes, FromEnv and the README's configuration
// table (checked by TestREADMEConfigTable) all follow from [keys]: adding a
// key means adding an entry there. A key that is not in the table is a
// server setting (Config.Settings) if it has a setting's name, else an error.
type key struct {
	name    string        // as libpq, or the tool that defines it, spells it
	aliases []string      // other tools' names for it, in precedence after name
	field   string        // the Config field it fills; "" for none
	use     use           // what happens to it
	value   kind          // how its value is read
	env     []string      // FromEnv's variables for the field: the current name, then a legacy twin
	drivers driverSupport // use passed: the drivers that accept it; the other one refuses it
	why     string        // use removed: why
	oneName bool          // giving two of its names is an error rather than a precedence
}

// use says what happens to a key.
type use uint8

const (
	passed  use = iota // a libpq connection parameter: passed to the driver as given
	sent               // read into field, then sent to the driver as poolsafe writes it
	pool               // read into field, which Open applies to its pool; sql.Open("poolsafe", url) refuses it
	setting            // read into field, a server setting: applied per pool mode (Config.TxSettings)
	read               // read into field (or only checked) for poolsafe itself
	hint               // removed; its value says the pool mode
	removed            // removed without effect, for the reason in why
)

// driverSupport lists which drivers understand a libpq connection parameter.
type driverSupport struct{ pgx, pq bool }

var (
	both     = driverSupport{pgx: true, pq: true}
	pgxAlone = driverSupport{pgx: true}
	pqAlone  = driverSupport{pq: true}
)

// keys is the table, grouped like Config's fields.
var keys = slices.Concat([]key{
	// connection
	{name: "driver", field: "Driver", use: read, value: driverName, env: []string{EnvDriver}},
	{name: "pool_mode", field: "PoolMode", use: hint, value: poolModeName, env: []string{EnvPoolMode}},
	{name: "default_query_exec_mode", field: "PgxExecMode", use: read, value: execMode, env: []string{EnvPgxExecMode}},
	{name: "sslmode", field: "SSLMode", use: sent, env: []string{EnvSSLMode}},
	{name: "application_name", aliases: []string{"fallback_application_name"}, field: "ApplicationName", use: sent, env: []string{EnvApplicationName}},
	{name: "client_encoding", use: read, value: utf8},

	// pool
	{name: "connection_limit", aliases: []string{"pool_max_conns"}, oneName: true, field: "MaxOpenConns", use: pool, value: count, env: []string{EnvMaxOpenConns, EnvMaxPoolSize}},
	{name: "pool_min_conns", field: "MaxIdleConns", use: pool, value: count, env: []string{EnvMaxIdleConns, EnvMinPoolSize}},
	{name: "pool_max_conn_lifetime", field: "ConnMaxLifetime", use: pool, value: goDuration, env: []string{EnvConnMaxLifetime}},
	{name: "pool_max_conn_idle_time", field: "ConnMaxIdleTime", use: pool, value: goDuration, env: []string{EnvConnMaxIdleTime}},

	// timeouts
	{name: "connect_timeout", field: "ConnectTimeout", use: sent, value: seconds, env: []string{EnvConnectTimeout, EnvConnectionTimeout}},
	{name: "pool_timeout", field: "AcquireTimeout", use: pool, value: seconds, env: []string{EnvAcquireTimeout}},
	{name: "statement_timeout", field: "StatementTimeout", use: setting, value: gucDuration, env: []string{EnvStatementTimeout}},
	{name: "lock_timeout", field: "LockTimeout", use: setting, value: gucDuration, env: []string{EnvLockTimeout}},
	{name: "idle_in_transaction_session_timeout", field: "IdleInTransactionTimeout", use: setting, value: gucDuration, env: []string{EnvIdleInTransactionTimeout}},

	// session
	{name: "search_path", aliases: []string{"schema", "currentSchema"}, field: "SearchPath", use: setting, env: []string{EnvSearchPath}},
	{name: "default_transaction_isolation", field: "Isolation", use: read, value: isolation, env: []string{EnvIsolation}},
	{name: "options", use: setting, value: optionList},

	// pool-mode hints from other tools: true or 0 means transaction mode
	{name: "pgbouncer", use: hint, value: boolean},
	{name: "no_prepare", use: hint, value: boolean},
	{name: "raw_sql", use: hint, value: boolean},
	{name: "statement_cache_size", use: hint, value: count},
	{name: "prepare_threshold", aliases: []string{"prepareThreshold"}, use: hint, value: count},
},
	// libpq connection parameters
	passedTo(both, "host", "port", "dbname", "database", "user", "password", "passfile", "sslcert", "sslkey",
		"sslrootcert", "sslsni", "sslnegotiation", "krbsrvname", "krbspn", "target_session_attrs",
		"service", "min_protocol_version", "max_protocol_version"),
	passedTo(pgxAlone, "sslpassword", "sslcertmode", "servicefile", "channel_binding", "require_auth"),
	passedTo(pqAlone, "hostaddr", "ssl_min_protocol_version", "ssl_max_protocol_version", "load_balance_hosts"),

	// other drivers' and tools' keys: poolsafe chooses those settings
	// itself, or they mean nothing to PostgreSQL
	removedFor("lib/pq setting; poolsafe sets it", "binary_parameters"),
	removedFor("lib/pq setting", "disable_prepared_binary_result", "sslinline"),
	removedFor("pgx setting; poolsafe sets it per pool mode", "statement_cache_capacity", "description_cache_capacity"),
	removedFor("pgx setting; use PgxExecMode", "prefer_simple_protocol"),
	removedFor("pgxpool setting", "pool_health_check_period", "pool_max_conn_lifetime_jitter"),
	removedFor("Prisma setting; use context deadlines", "socket_timeout"),
	removedFor("Prisma setting; use sslmode", "sslaccept"),
	removedFor("Prisma setting; use sslcert/sslkey", "sslidentity"),
	removedFor("both drivers require ISO", "datestyle"),
)

// passedTo returns the keys of libpq connection parameters that drivers
// accept.
func passedTo(drivers driverSupport, names ...string) []key {
	return manyKeys(key{use: passed, drivers: drivers}, names)
}

// removedFor returns the keys removed without effect, for the reason why.
func removedFor(why string, names ...string) []key {
	return manyKeys(key{use: removed, why: why}, names)
}

func manyKeys(k key, names []string) []key {
	out := make([]key, len(names))
	for i, n := range names {
		out[i], out[i].name = k, n
	}
	return out
}

// keyNamed finds a key by its name or an alias.
var keyNamed = func() map[string]*key {
	m := map[string]*key{}
	for i := range keys {
		k := &keys[i]
		for _, n := range k.names() {
			if m[n] != nil {
				panic("driverconf: key " + n + " is in the table twice")
			}
			m[n] = k
		}
	}
	return m
}()

func (k *key) names() []string { return append([]string{k.name}, k.aliases...) }

// readIntoConfig reports whether poolsafe reads k's value (into a field,
// Settings, or only to check it) rather than pass or remove it.
func (k *key) readIntoConfig() bool {
	switch k.use {
	case sent, pool, setting, read:
		return true
	}
	return false
}

// kind says how a key's value is read.
type kind uint8

const (
	text         kind = iota
	count             // a non-negative integer
	boolean           // true or false
	seconds           // a number of seconds (fractions allowed) or a Go duration
	goDuration        // a Go duration
	gucDuration       // milliseconds, a number with a PostgreSQL unit, or a Go duration
	driverName        // pgx or pq
	poolModeName      // direct, session or transaction
	execMode          // a pgx exec mode, checked by Validate
	isolation         // an isolation level
	utf8              // the client encoding, which must be UTF8
	optionList        // libpq's options: -c name=value items
)

// parse reads v as a value of kind k. In the environment every duration is a
// number of seconds or a Go duration (env).
func (k kind) parse(v string, env bool) (any, error) {
	if env && (k == goDuration || k == gucDuration) {
		k = seconds
	}
	var d time.Duration
	var err error
	switch k {
	case count:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("must be a non-negative integer, got %q", v)
		}
		return n, nil
	case boolean:
		b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(v)))
		if err != nil {
			return nil, fmt.Errorf("must be true or false, got %q", v)
		}
		return b, nil
	case seconds:
		d, err = parseSeconds(v)
	case goDuration:
		d, err = parseGoDuration(v)
	case gucDuration:
		d, err = parseGUCDuration(v)
	case driverName:
		return parseDriver(v)
	case poolModeName:
		return parsePoolMode(v)
	case execMode:
		return PgxExecMode(strings.ToLower(strings.TrimSpace(v))), nil
	case isolation:
		return parseIsolation(v)
	case utf8:
		if !strings.EqualFold(strings.ReplaceAll(v, "-", ""), "utf8") {
			return nil, fmt.Errorf("must be UTF8 (both drivers require it), got %q", v)
		}
		return v, nil
	default:
		return v, nil
	}
	return d, err
}

// impliedMode returns the pool mode a hint's value means, "" for none.
func (k *key) impliedMode(v string) (PoolMode, error) {
	x, err := k.value.parse(v, false)
	switch x := x.(type) {
	case PoolMode:
		return x, err
	case bool:
		if x {
			return Transaction, nil
		}
	case int:
		if x == 0 {
			return Transaction, nil
		}
	}
	return "", err
}

// fieldOf returns c's field that k fills.
func (c *Config) fieldOf(k *key) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByName(k.field)
}

// set stores v, read from k, in c's field. A server timeout set to 0
// ("disabled") is also kept as a setting, so that it is sent rather than
// taken for unset; a later non-zero value drops it again.
func (c *Config) set(k *key, v any) {
	f := c.fieldOf(k)
	f.Set(reflect.ValueOf(v).Convert(f.Type()))
	d, isDuration := v.(time.Duration)
	if k.use != setting || !isDuration {
		return
	}
	m := maps.Clone(c.Settings)
	switch cur, ok := m[k.name]; {
	case d == 0 && !ok:
		if m == nil {
			m = map[string]string{}
		}
		m[k.name] = "0"
	case d != 0 && ok && cur == "0":
		delete(m, k.name)
		if len(m) == 0 {
			m = nil
		}
	default:
		return
	}
	c.Settings = m
}

func parseDriver(v string) (Driver, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "pgx", "pgx/v5":
		return PGX, nil
	case "pq", "postgres", "lib/pq":
		return PQ, nil
	}
	return "", fmt.Errorf("unknown driver %q; use pgx or pq", v)
}

func parsePoolMode(v string) (PoolMode, error) {
	switch m := PoolMode(strings.ToLower(strings.TrimSpace(v))); m {
	case Direct, Session, Transaction:
		return m, nil
	case "statement":
		return "", fmt.Errorf("statement pooling cannot run transactions; use transaction")
	}
	return "", fmt.Errorf("unknown pool mode %q; use direct, session or transaction", v)
}

func parseIsolation(v string) (sql.IsolationLevel, error) {
	s := strings.ToLower(strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '_' || r == '-' }), " "))
	switch s {
	case "read committed":
		return sql.LevelReadCommitted, nil
	case "repeatable read":
		return sql.LevelRepeatableRead, nil
	case "serializable":
		return sql.LevelSerializable, nil
	case "read uncommitted":
		return sql.LevelReadUncommitted, nil
	}
	return 0, fmt.Errorf("unknown isolation level %q; use read committed, repeatable read or serializable", v)
}

// parseSeconds reads a whole or fractional number of seconds, or a Go duration.
func parseSeconds(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return floatDuration(f, time.Second, v)
	}
	return parseGoDuration(v)
}

// parseGoDuration reads a Go duration such as "1m30s".
func parseGoDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 30s or 5m, got %q", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %q", v)
	}
	return d, nil
}

// parseGUCDuration reads a PostgreSQL time setting: a bare number is
// milliseconds; units us, ms, s, min, h, d; or a Go duration.
func parseGUCDuration(v string) (time.Duration, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if f, err := strconv.ParseFloat(num, 64); err == nil {
		mult := map[string]time.Duration{
			"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
			"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
		}
		if m, ok := mult[unit]; ok {
			d, err := floatDuration(f, m, v)
			if err == nil && d > maxGUCDuration {
				return 0, fmt.Errorf("%q is more than PostgreSQL allows (%dms)", v, maxGUCDuration.Milliseconds())
			}
			return d, err
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want milliseconds or a value with a unit (us, ms, s, min, h, d), got %q", v)
	}
	if d > maxGUCDuration {
		return 0, fmt.Errorf("%q is more than PostgreSQL allows (%dms)", v, maxGUCDuration.Milliseconds())
	}
	return d, nil
}

// maxGUCDuration is the largest PostgreSQL timeout setting (INT_MAX ms).
const maxGUCDuration = math.MaxInt32 * time.Millisecond

// floatDuration converts f units into a Duration, rejecting negative,
// non-finite and overflowing values.
func floatDuration(f float64, unit time.Duration, raw string) (time.Duration, error) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("want a finite number, got %q", raw)
	case f < 0:
		return 0, fmt.Errorf("must not be negative, got %q", raw)
	case f*float64(unit) >= math.MaxInt64:
		return 0, fmt.Errorf("%q is too large", raw)
	}
	return time.Duration(f * float64(unit)), nil
}
