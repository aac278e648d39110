package driverconf

import (
	"os"
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
	EnvReplicaURLs              = "DATABASE_REPLICA_URLS" // comma-separated postgres:// URLs
	EnvReplicaMaxLag            = "DB_REPLICA_MAX_LAG"
	EnvReplicaWait              = "DB_REPLICA_WAIT"
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
	if v, ok := get(EnvReplicaURLs); ok {
		if cfg.ReplicaURLs, err = splitURLList(v); err != nil {
			return Config{}, err
		}
	}
	for name, field := range map[string]*time.Duration{EnvReplicaMaxLag: &cfg.ReplicaMaxLag, EnvReplicaWait: &cfg.ReplicaWait} {
		if s, ok := get(name); ok {
			v, err := goDuration.parse(s, true)
			if err != nil {
				return Config{}, fieldErr(name, "%v", err)
			}
			*field = v.(time.Duration)
		}
	}
	for i := range keys {
		k := &keys[i]
		v, ok, err := envValue(get, k)
		if err != nil {
			return Config{}, err
		}
		if ok {
			cfg.set(k, v)
			cfg.src.fromEnv[k.field] = true
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// envValue reads k's variables: the current name or its legacy twin (both
// set to different values is an error).
func envValue(get func(string) (string, bool), k *key) (any, bool, error) {
	var val any
	var from string
	for _, name := range k.env {
		s, ok := get(name)
		if !ok {
			continue
		}
		v, err := k.value.parse(s, true)
		if err != nil {
			return nil, false, fieldErr(name, "%v", err)
		}
		if from != "" && v != val {
			return nil, false, fieldErr(from, "is %v but %s is %v; set only one", val, name, v)
		}
		val, from = v, name
	}
	return val, from != "", nil
}

// splitURLList splits a comma-separated list of postgres:// URLs. A comma
// inside a URL (a multi-host URL: postgres://h1,h2/db) stays in it: only a
// comma followed by a scheme starts the next URL.
func splitURLList(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case strings.HasPrefix(part, "postgres://") || strings.HasPrefix(part, "postgresql://"):
			out = append(out, part)
		case len(out) == 0:
			return nil, fieldErr(EnvReplicaURLs, "must be postgres:// URLs separated by commas")
		default:
			out[len(out)-1] += "," + part
		}
	}
	return out, nil
}
