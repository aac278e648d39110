package driverconf

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// Validate reports every problem with c (after defaults are applied), each
// a [*FieldError] naming the field, joined with errors.Join. The errors match
// [ErrInvalidConfig].
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

// resolved is a validated Config plus the connection parameters to hand
// to the driver.
type resolved struct {
	cfg     Config
	conn    []kv
	metrics *sqladapter.Metrics
	// emptyAppName: the URL gives application_name='' and nothing else
	// names one, so '' is sent as the drivers would send it; sending none
	// would let the driver take PGAPPNAME from the environment instead.
	emptyAppName bool
}

// resolve reads c.URL (once: Parse's reading is reused), fills unset fields
// from it, applies defaults and validates the result.
func (c Config) resolve() (*resolved, error) {
	p, err := c.source()
	if err != nil {
		return nil, err
	}
	if err := p.fill(&c); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	var errs []error
	add := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }

	switch c.Driver {
	case PGX, PQ:
	default:
		add("Driver", "unknown driver %q; use %q or %q", c.Driver, PGX, PQ)
	}
	switch c.PoolMode {
	case Direct, Session, Transaction:
		if p.byKey && p.mode == Transaction && c.PoolMode != Transaction {
			add("PoolMode", "is %q but the URL says transaction pooling (pgbouncer=true, pool_mode, port 6543 or a no-prepare hint); remove the hint or the setting", c.PoolMode)
		}
	default:
		add("PoolMode", "unknown pool mode %q; use direct, session or transaction", c.PoolMode)
	}
	switch c.PgxExecMode {
	case ExecModeExec, ExecModeSimpleProtocol:
	case ExecModeCacheStatement, ExecModeCacheDescribe, ExecModeDescribeExec:
		if c.PoolMode == Transaction {
			add("PgxExecMode", "%q is not safe through a transaction pooler; use exec or simple_protocol", c.PgxExecMode)
		}
	default:
		add("PgxExecMode", "unknown pgx exec mode %q; use exec or simple_protocol", c.PgxExecMode)
	}
	if c.SlowQuery < 0 {
		add("SlowQuery", "must not be negative, got %s", c.SlowQuery)
	}
	if c.MaxOpenConns < 0 {
		add("MaxOpenConns", "must not be negative, got %d", c.MaxOpenConns)
	}
	if c.MaxIdleConns < 0 {
		add("MaxIdleConns", "must not be negative, got %d", c.MaxIdleConns)
	}
	if c.MaxOpenConns > 0 && c.MaxIdleConns > c.MaxOpenConns {
		add("MaxIdleConns", "(%d, the minimum pool size) must not exceed MaxOpenConns (%d, the maximum)", c.MaxIdleConns, c.MaxOpenConns)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"AcquireTimeout", c.AcquireTimeout}, {"ConnectTimeout", c.ConnectTimeout},
		{"ConnMaxIdleTime", c.ConnMaxIdleTime}, {"ConnMaxLifetime", c.ConnMaxLifetime},
		{"IdleInTransactionTimeout", c.IdleInTransactionTimeout}, {"LockTimeout", c.LockTimeout},
		{"StatementTimeout", c.StatementTimeout},
	} {
		if d.v < 0 {
			add(d.name, "must not be negative, got %s", d.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"IdleInTransactionTimeout", c.IdleInTransactionTimeout}, {"LockTimeout", c.LockTimeout},
		{"StatementTimeout", c.StatementTimeout},
	} {
		if d.v > maxGUCDuration {
			add(d.name, "%s is more than PostgreSQL allows (%s)", d.v, maxGUCDuration)
		}
	}
	switch c.SSLMode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		add("SSLMode", "unknown sslmode %q (from the URL, the field, DB_SSLMODE or PGSSLMODE); use disable, allow, prefer, require, verify-ca or verify-full", c.SSLMode)
	}
	switch c.Isolation {
	case sql.LevelReadUncommitted, sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable:
	default:
		add("Isolation", "%s is not supported by PostgreSQL; use read committed, repeatable read or serializable", c.Isolation)
	}
	if strings.ContainsRune(c.ApplicationName, 0) || strings.ContainsRune(c.SearchPath, 0) {
		add("ApplicationName/SearchPath", "must not contain NUL bytes")
	}
	for k, v := range c.Settings {
		if !validSettingName(k) {
			add("Settings", "%q is not a valid server setting name", k)
		}
		if strings.ContainsRune(v, 0) {
			add("Settings", "value of %q contains a NUL byte", k)
		}
	}
	for _, e := range p.conn {
		sup := keyNamed[e.k].drivers
		if (c.Driver == PGX && !sup.pgx) || (c.Driver == PQ && !sup.pq) {
			add(e.k, "is not supported by driver %q; remove it or switch driver", c.Driver)
		}
	}
	if c.DirectURL != "" {
		dp, err := parseConnString(c.DirectURL)
		switch {
		case err != nil:
			errs = append(errs, inDirectURL(err))
		case dp.mode == Transaction:
			add("DirectURL", "points at a transaction pooler; it must allow sessions (a direct or session-mode URL)")
		}
	}
	if c.ReplicaMaxLag < 0 || c.ReplicaWait < 0 {
		add("ReplicaMaxLag/ReplicaWait", "must not be negative, got %s and %s", c.ReplicaMaxLag, c.ReplicaWait)
	}
	if _, err := c.replicas(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	_, appNameKey := p.values["application_name"]
	return &resolved{cfg: c, conn: p.conn, emptyAppName: appNameKey && c.ApplicationName == ""}, nil
}

// replicas returns the configuration of each of c's replicas: c with URL
// replaced by the replica's, in the pool mode that URL says, else c's.
func (c Config) replicas() ([]Config, error) {
	var out []Config
	for i, u := range c.ReplicaURLs {
		p, err := parseConnString(u)
		if err != nil {
			field := fmt.Sprintf("ReplicaURLs[%d]", i)
			var fe *FieldError
			if errors.As(err, &fe) {
				return nil, fieldErr(field, "%s", fe.Problem)
			}
			return nil, fieldErr(field, "cannot be read")
		}
		r := c.withoutURLKeys()
		r.URL, r.src, r.DirectURL, r.ReplicaURLs = u, p, "", nil
		if p.mode != "" {
			r.PoolMode = p.mode
		} else {
			r.PoolMode = c.WithDefaults().PoolMode
		}
		out = append(out, r)
	}
	return out, nil
}

// startupSettings are the server settings sent with the connection (direct
// mode) or set once after connecting (session mode).
func (r *resolved) startupSettings() [][2]string {
	if r.cfg.PoolMode == Transaction {
		return nil
	}
	return r.cfg.TxSettings()
}

// dsn builds the key=value connection string for the driver: libpq
// connection parameters only, plus the settings poolsafe controls.
func (r *resolved) dsn() string {
	pairs := append([]kv(nil), r.conn...)
	pairs = append(pairs, kv{"sslmode", r.cfg.SSLMode})
	if r.cfg.ConnectTimeout > 0 {
		secs := int((r.cfg.ConnectTimeout + time.Second - 1) / time.Second)
		pairs = append(pairs, kv{"connect_timeout", fmt.Sprint(secs)})
	}
	if r.cfg.ApplicationName != "" || r.emptyAppName {
		pairs = append(pairs, kv{"application_name", r.cfg.ApplicationName})
	}
	return joinDSN(pairs)
}

// scrub removes the connection string and secrets from a driver's message,
// keeping the reason.
func (r *resolved) scrub(msg string) string {
	// pgx: "cannot parse `<connection string>`: reason"
	if i := strings.Index(msg, "`: "); i >= 0 && strings.HasPrefix(msg, "cannot parse `") {
		msg = msg[i+3:]
	}
	for _, e := range r.conn {
		// Very short secrets would garble the message and cannot be told
		// apart from ordinary words in it anyway.
		if isSecretKey(e.k) && len(e.v) >= 3 {
			msg = strings.ReplaceAll(msg, e.v, redacted)
		}
	}
	return msg
}
