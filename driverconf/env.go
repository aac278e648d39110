package driverconf

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables read by [FromEnv].
const (
	EnvDatabaseURL              = "DATABASE_URL"
	EnvDirectURL                = "DIRECT_URL"
	EnvDriver                   = "DB_DRIVER"
	EnvPoolMode                 = "DB_POOL_MODE"
	EnvPgxExecMode              = "DB_PGX_EXEC_MODE"
	EnvMaxOpenConns             = "DB_MAX_OPEN_CONNS"
	EnvMaxIdleConns             = "DB_MAX_IDLE_CONNS"
	EnvMaxPoolSize              = "DB_MAX_POOL_SIZE" // original system's name for DB_MAX_OPEN_CONNS
	EnvMinPoolSize              = "DB_MIN_POOL_SIZE" // original system's name for DB_MAX_IDLE_CONNS
	EnvConnMaxLifetime          = "DB_CONN_MAX_LIFETIME"
	EnvConnMaxIdleTime          = "DB_CONN_MAX_IDLE_TIME"
	EnvAcquireTimeout           = "DB_ACQUIRE_TIMEOUT"
	EnvConnectTimeout           = "DB_CONNECT_TIMEOUT"
	EnvConnectionTimeout        = "DB_CONNECTION_TIMEOUT" // original system's name for DB_CONNECT_TIMEOUT
	EnvStatementTimeout         = "DB_STATEMENT_TIMEOUT"
	EnvLockTimeout              = "DB_LOCK_TIMEOUT"
	EnvIdleInTransactionTimeout = "DB_IDLE_IN_TRANSACTION_TIMEOUT"
	EnvSearchPath               = "DB_SEARCH_PATH"
	EnvApplicationName          = "DB_APPLICATION_NAME"
	EnvSSLMode                  = "DB_SSLMODE"
	EnvIsolation                = "DB_ISOLATION"
)

// FromEnv builds a Config from the process environment: DATABASE_URL
// (required) is read with [Parse], then every DB_* variable that is set
// overrides what the URL said. Durations accept Go syntax ("30s", "5m") or
// a plain number of seconds.
func FromEnv() (Config, error) {
	return fromEnv(os.LookupEnv)
}

func fromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) (string, bool) {
		v, ok := lookup(k)
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	raw, ok := get(EnvDatabaseURL)
	if !ok {
		return Config{}, fieldErr(EnvDatabaseURL, "is not set; set it to a postgres:// URL")
	}
	cfg, err := Parse(raw)
	if err != nil {
		return Config{}, err
	}
	if v, ok := get(EnvDirectURL); ok {
		cfg.DirectURL = v
	}
	if v, ok := get(EnvDriver); ok {
		d, err := parseDriver(v)
		if err != nil {
			return Config{}, fieldErr(EnvDriver, "%v", err)
		}
		cfg.Driver = d
	}
	if v, ok := get(EnvPoolMode); ok {
		switch m := PoolMode(strings.ToLower(v)); m {
		case Direct, Session, Transaction:
			cfg.PoolMode = m
		default:
			return Config{}, fieldErr(EnvPoolMode, "unknown pool mode %q; use direct, session or transaction", v)
		}
	}
	if v, ok := get(EnvPgxExecMode); ok {
		cfg.PgxExecMode = PgxExecMode(strings.ToLower(v))
	}
	if v, ok := get(EnvSearchPath); ok {
		cfg.SearchPath = v
	}
	if v, ok := get(EnvApplicationName); ok {
		cfg.ApplicationName = v
	}
	if v, ok := get(EnvSSLMode); ok {
		cfg.SSLMode = v
	}
	if v, ok := get(EnvIsolation); ok {
		lvl, err := parseIsolation(v)
		if err != nil {
			return Config{}, fieldErr(EnvIsolation, "%v", err)
		}
		cfg.Isolation = lvl
	}

	ints := []struct {
		dst        *int
		name, twin string
	}{
		{&cfg.MaxOpenConns, EnvMaxOpenConns, EnvMaxPoolSize},
		{&cfg.MaxIdleConns, EnvMaxIdleConns, EnvMinPoolSize},
	}
	for _, e := range ints {
		n, set, err := envInt(get, e.name, e.twin)
		if err != nil {
			return Config{}, err
		}
		if set {
			*e.dst = n
		}
	}
	durs := []struct {
		dst        *time.Duration
		name, twin string
		guc        string // the server setting, for an explicit 0
	}{
		{&cfg.ConnMaxLifetime, EnvConnMaxLifetime, "", ""},
		{&cfg.ConnMaxIdleTime, EnvConnMaxIdleTime, "", ""},
		{&cfg.AcquireTimeout, EnvAcquireTimeout, "", ""},
		{&cfg.ConnectTimeout, EnvConnectTimeout, EnvConnectionTimeout, ""},
		{&cfg.StatementTimeout, EnvStatementTimeout, "", "statement_timeout"},
		{&cfg.LockTimeout, EnvLockTimeout, "", "lock_timeout"},
		{&cfg.IdleInTransactionTimeout, EnvIdleInTransactionTimeout, "", "idle_in_transaction_session_timeout"},
	}
	for _, e := range durs {
		d, set, err := envDuration(get, e.name, e.twin)
		if err != nil {
			return Config{}, err
		}
		if set {
			*e.dst = d
			if d == 0 && e.guc != "" {
				cfg.setExplicitZero(e.guc)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// envInt reads name or its legacy twin; both set to different values is an error.
func envInt(get func(string) (string, bool), name, twin string) (int, bool, error) {
	read := func(k string) (int, bool, error) {
		v, ok := get(k)
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, false, fieldErr(k, "must be a non-negative integer, got %q", v)
		}
		return n, true, nil
	}
	n, ok, err := read(name)
	if err != nil {
		return 0, false, err
	}
	if twin == "" {
		return n, ok, nil
	}
	m, tok, err := read(twin)
	if err != nil {
		return 0, false, err
	}
	if ok && tok && n != m {
		return 0, false, fieldErr(name, "is %d but %s is %d; set only one", n, twin, m)
	}
	if tok {
		return m, true, nil
	}
	return n, ok, nil
}

func envDuration(get func(string) (string, bool), name, twin string) (time.Duration, bool, error) {
	read := func(k string) (time.Duration, bool, error) {
		v, ok := get(k)
		if !ok {
			return 0, false, nil
		}
		d, err := parseSeconds(v)
		if err != nil {
			return 0, false, fieldErr(k, "%v", err)
		}
		return d, true, nil
	}
	d, ok, err := read(name)
	if err != nil {
		return 0, false, err
	}
	if twin == "" {
		return d, ok, nil
	}
	e, tok, err := read(twin)
	if err != nil {
		return 0, false, err
	}
	if ok && tok && d != e {
		return 0, false, fieldErr(name, "is %s but %s is %s; set only one", d, twin, e)
	}
	if tok {
		return e, true, nil
	}
	return d, ok, nil
}
