package driverconf

import (
	"fmt"
	"net"
	"strings"
)

// Explain says, in a few lines of text, what c becomes: the driver, the
// pool mode and why, what happened to every URL key, what each driver is
// given, where each server setting is applied and what it costs, the pool
// settings, and the hazards it sees. Passwords are redacted; it makes no
// connection. An invalid c is explained as far as it goes, followed by the
// problems (the same as Validate's).
func (c Config) Explain() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("URL:        %s", RedactURL(c.URL))
	r, err := c.resolve()
	if r == nil {
		line("problems:   %v", err)
		return b.String()
	}
	cfg := r.cfg
	driverWhy := "default"
	if c.Driver != "" {
		driverWhy = "from the configuration"
		if p, err := c.source(); err == nil && p.values["driver"] != "" {
			driverWhy = "from the URL"
		}
	}
	line("driver:     %s (%s; the other is %s)", cfg.Driver, driverWhy, otherDriver(cfg.Driver))
	line("pool mode:  %s (%s)", cfg.PoolMode, c.modeReason())
	var notes []string
	if p, err := c.source(); err == nil {
		notes = p.notes // also for a Config built by hand, which Notes leaves empty
	}
	if len(notes) > 0 {
		line("URL keys:")
		for _, n := range notes {
			line("  %s", n)
		}
	}
	line("connection: %s", RedactURL(r.dsn()))
	if reps, err := cfg.replicas(); err == nil {
		for _, rc := range reps {
			line("replica:    %s (%s mode; reads sent there with Reader or OnReplica)", RedactURL(rc.URL), rc.PoolMode)
		}
	}
	switch cfg.Driver {
	case PGX:
		mode := "exec: one round trip per query, no named statement"
		if cfg.PgxExecMode == ExecModeSimpleProtocol {
			mode = "simple_protocol: arguments interpolated client-side, no named statement"
		} else if cfg.PgxExecMode != ExecModeExec {
			mode = string(cfg.PgxExecMode) + ": named, cached statements (direct and session mode only)"
		}
		line("pgx:        query exec mode %s; statement and description caches %s", mode,
			map[bool]string{true: "on", false: "off"}[cfg.PgxExecMode == ExecModeCacheStatement || cfg.PgxExecMode == ExecModeCacheDescribe])
	case PQ:
		line("lib/pq:     binary_parameters=yes: a query with arguments is one round trip with the unnamed statement")
	}
	if cfg.PoolMode != Direct {
		line("cancel:     no CancelRequest reaches the pooler: a context that ends mid-statement closes that connection")
	}
	if cfg.PoolMode == Transaction {
		line("prepare:    client-side: db.Prepare and sqlx's prepared statements leave nothing on a server connection")
	}
	if settings := cfg.TxSettings(); len(settings) > 0 {
		line("settings:")
		for _, s := range settings {
			line("  %s=%s: %s", s[0], s[1], settingPlace(cfg.PoolMode))
		}
	}
	line("pool:       MaxOpenConns %d, MaxIdleConns %d, ConnMaxLifetime %s, ConnMaxIdleTime %s, AcquireTimeout %s, ConnectTimeout %s",
		cfg.MaxOpenConns, cfg.MaxIdleConns, cfg.ConnMaxLifetime, cfg.ConnMaxIdleTime, orWait(cfg.AcquireTimeout.String()), cfg.ConnectTimeout)
	if h := r.hazards(); len(h) > 0 {
		line("hazards:")
		for _, s := range h {
			line("  - %s", s)
		}
	}
	if err != nil {
		line("problems:   %v", err)
	}
	return b.String()
}

func otherDriver(d Driver) string {
	if d == PQ {
		return "pgx: driver=pgx or " + EnvDriver + "=pgx"
	}
	return "lib/pq: driver=pq or " + EnvDriver + "=pq"
}

func orWait(s string) string {
	if s == "0s" {
		return "0 (as long as the call's context allows)"
	}
	return s
}

// modeReason says where c's pool mode comes from.
func (c Config) modeReason() string {
	p, err := c.source()
	switch {
	case err != nil:
		return "unknown: the URL does not parse"
	case p.mode != "" && (c.PoolMode == "" || c.PoolMode == p.mode):
		var why []string
		for _, n := range p.notes {
			if k, ok := strings.CutPrefix(n, "removed "); ok && strings.HasSuffix(n, ": pool-mode hint") {
				why = append(why, strings.TrimSuffix(k, ": pool-mode hint"))
			} else if strings.HasPrefix(n, "port 6543") {
				why = append(why, "port 6543, Supabase's transaction pooler")
			}
		}
		return "from the URL: " + strings.Join(why, ", ")
	case c.PoolMode != "":
		return "from the configuration"
	}
	return "default: nothing in the URL names a pooler; say pool_mode=transaction or " + EnvPoolMode + "=transaction if one is in front"
}

func settingPlace(m PoolMode) string {
	switch m {
	case Direct:
		return "sent as a startup parameter (free)"
	case Session:
		return "set once per connection with set_config after connecting (one round trip per new connection)"
	}
	return "set_config(…, true) after BEGIN in every transaction (one more round trip); a statement outside a " +
		"transaction runs in one of its own (four round trips instead of one) — ALTER ROLE … SET costs nothing"
}

// hazards are what the configuration allows but probably should not.
func (r *resolved) hazards() []string {
	var out []string
	cfg := r.cfg
	host, port := "", ""
	for _, p := range r.conn {
		switch p.k {
		case "host":
			host = p.v
		case "port":
			port = p.v
		}
	}
	if cfg.PoolMode != Transaction && hasPort(port, "6432") {
		out = append(out, fmt.Sprintf("port 6432 is PgBouncer's default, but the pool mode is %s: if a transaction-mode "+
			"pooler listens there, say pool_mode=transaction (or %s=transaction)", cfg.PoolMode, EnvPoolMode))
	}
	if cfg.PoolMode == Transaction && len(cfg.TxSettings()) > 0 {
		out = append(out, "server settings through a transaction pooler cost round trips on every statement outside a "+
			"transaction; set them on the role (ALTER ROLE … SET) or the database, or schema-qualify names instead of search_path")
	}
	if !loopback(host) && (cfg.SSLMode == "disable" || cfg.SSLMode == "allow" || cfg.SSLMode == "prefer") {
		out = append(out, fmt.Sprintf("sslmode=%s to %s: the server is not verified and the connection may be unencrypted; "+
			"use sslmode=verify-full", cfg.SSLMode, host))
	}
	if cfg.PoolMode == Transaction && cfg.DirectURL == "" {
		out = append(out, "no DirectURL ("+EnvDirectURL+"): migrations, LISTEN and session advisory locks need a session-capable URL")
	}
	return out
}

func loopback(host string) bool {
	if host == "" || host == "localhost" || strings.HasPrefix(host, "/") {
		return true
	}
	for _, h := range strings.Split(host, ",") {
		ip := net.ParseIP(strings.TrimSpace(h))
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
