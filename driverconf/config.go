package driverconf

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Driver names the database/sql driver a [Config] opens.
type Driver string

// The supported drivers.
const (
	// PGX is github.com/jackc/pgx/v5/stdlib.
	PGX Driver = "pgx"
	// PQ is github.com/lib/pq.
	PQ Driver = "pq"
)

// PoolMode says what sits between the client and PostgreSQL.
type PoolMode string

// The supported pool modes.
const (
	// Direct is a plain connection to PostgreSQL.
	Direct PoolMode = "direct"
	// Session is a pooler in session mode (PgBouncer pool_mode=session,
	// Supabase's pooler on port 5432): one server connection per client
	// connection, so it behaves like Direct.
	Session PoolMode = "session"
	// Transaction is a pooler in transaction mode (PgBouncer
	// pool_mode=transaction, Supabase's pooler on port 6543): consecutive
	// statements outside a transaction may run on different server
	// connections, so nothing may rely on session state.
	Transaction PoolMode = "transaction"
)

// PgxExecMode selects how the pgx driver sends queries. The values are
// pgx's own names (see pgx.QueryExecMode).
type PgxExecMode string

// The pgx query execution modes.
const (
	// ExecModeExec sends an unnamed Parse/Describe/Bind/Execute/Sync in one
	// round trip: no named statement, arguments in binary where possible.
	// Safe in every pool mode; the default.
	ExecModeExec PgxExecMode = "exec"
	// ExecModeSimpleProtocol interpolates arguments client-side and sends one
	// simple Query message. Safe in every pool mode.
	ExecModeSimpleProtocol PgxExecMode = "simple_protocol"
	// ExecModeCacheStatement prepares named statements and caches them per
	// connection (pgx's own default). Direct and session modes only.
	ExecModeCacheStatement PgxExecMode = "cache_statement"
	// ExecModeCacheDescribe caches statement descriptions per connection.
	// Direct and session modes only.
	ExecModeCacheDescribe PgxExecMode = "cache_describe"
	// ExecModeDescribeExec describes then executes the unnamed statement in
	// two round trips. Direct and session modes only: through a transaction
	// pooler the second round trip can reach another server connection.
	ExecModeDescribeExec PgxExecMode = "describe_exec"
)

// Defaults applied by [Config.WithDefaults].
const (
	DefaultDriver          = PGX
	DefaultMaxOpenConns    = 10
	DefaultMaxIdleConns    = 5
	DefaultConnMaxLifetime = 30 * time.Minute
	DefaultConnMaxIdleTime = 5 * time.Minute
	DefaultConnectTimeout  = 10 * time.Second
	DefaultSSLMode         = "prefer"
	DefaultIsolation       = sql.LevelReadCommitted
)

// Config is one configuration for either driver. Build it with [Parse],
// [FromEnv] or by hand; fields set explicitly win over the keys of URL.
// The zero value of every field but URL means "use the default" (or, for
// PoolMode, "infer from the URL").
type Config struct {
	// Connection: where to connect, through what, and with which driver.
	//
	// URL is the connection string: postgres:// or postgresql:// URL, or a
	// libpq key=value DSN. Required.
	URL string

	// DirectURL is a session-capable URL to the same database (Prisma's
	// directUrl), used for migrations and anything else that needs a
	// session when URL is a transaction pooler. Defaults to "".
	DirectURL string

	// ReplicaURLs are streaming replicas of the same database, for the
	// reads a caller sends there explicitly (sqladapter.DB.Reader, InTx
	// with sqladapter.OnReplica). Each is read like URL, with its own pool
	// mode when its URL says one (pool_mode=, pgbouncer=true, port 6543),
	// else PoolMode's; every other field applies to them as to URL.
	// Environment: DATABASE_REPLICA_URLS, comma-separated postgres:// URLs.
	// Defaults to none.
	ReplicaURLs []string

	// ReplicaMaxLag is how far behind the primary a replica may be and
	// still serve reads that tolerate stale data. Environment:
	// DB_REPLICA_MAX_LAG. Defaults to 10s.
	ReplicaMaxLag time.Duration

	// ReplicaWait bounds how long a read that must see the caller's own
	// writes (sqladapter.ReadYourWrites) waits for a replica to replay
	// them before it reads the primary. Environment: DB_REPLICA_WAIT.
	// Defaults to 200ms.
	ReplicaWait time.Duration

	// Driver is the database/sql driver to use. URL key: driver.
	// Defaults to [PGX].
	Driver Driver

	// PoolMode says what sits in front of PostgreSQL. When empty it is
	// inferred from URL: pool_mode=, pgbouncer=true (Prisma), port 6543
	// (Supabase's transaction pooler) or the legacy hints no_prepare=true,
	// statement_cache_size=0, prepare_threshold=0, raw_sql=true mean
	// [Transaction]; anything else means [Direct].
	PoolMode PoolMode

	// PgxExecMode is how the pgx driver sends queries. In transaction mode
	// only [ExecModeExec] and [ExecModeSimpleProtocol] are allowed. URL key:
	// default_query_exec_mode. Defaults to [ExecModeExec].
	PgxExecMode PgxExecMode

	// SSLMode is the libpq sslmode, the same default for both drivers.
	// URL key: sslmode. Defaults to the PGSSLMODE environment variable
	// when it is set, as in libpq and both drivers, else to "prefer"
	// (libpq's and pgx's default; lib/pq alone would default to "require").
	SSLMode string

	// ApplicationName is sent as application_name (PgBouncer tracks it, so
	// it is safe in every pool mode). URL keys: application_name, else
	// fallback_application_name. Defaults to "" (not sent).
	ApplicationName string

	// Pool: how many connections database/sql keeps, and for how long.
	//
	// MaxOpenConns is the most connections open at once. URL keys:
	// connection_limit (Prisma), pool_max_conns (pgxpool). Defaults to 10.
	MaxOpenConns int

	// MaxIdleConns is the most idle connections kept open. URL keys:
	// pool_min_conns (pgxpool). Defaults to 5, and never more than
	// MaxOpenConns.
	MaxIdleConns int

	// ConnMaxLifetime closes connections older than this (the original
	// system's pool_recycle=1800). URL key: pool_max_conn_lifetime
	// (pgxpool). Defaults to 30m.
	ConnMaxLifetime time.Duration

	// ConnMaxIdleTime closes connections idle for longer. URL key:
	// pool_max_conn_idle_time (pgxpool). Defaults to 5m.
	ConnMaxIdleTime time.Duration

	// Timeouts: zero means the default: 10s to connect, the caller's context
	// to wait for a connection, the server's own for the server timeouts (an
	// explicit 0 in the URL or environment is sent, and disables one).
	//
	// ConnectTimeout bounds dialing and authenticating one connection.
	// URL key: connect_timeout (seconds). Defaults to 10s.
	ConnectTimeout time.Duration

	// AcquireTimeout bounds how long a call on the handle from [Open] waits
	// for a free connection when MaxOpenConns are all busy, separately from
	// the call's own context (database/sql itself has no such setting: a
	// *sql.DB from sql.Open cannot enforce it, and one you open over
	// [NewConnector] enforces it through sqladapter.Wrap's
	// WithAcquireTimeout). Zero means
	// wait as long as the caller's context allows. URL key: pool_timeout
	// (Prisma, seconds). Defaults to 0.
	AcquireTimeout time.Duration

	// StatementTimeout is applied as statement_timeout (at connection start
	// in direct and session modes, per transaction in transaction mode).
	// URL key: statement_timeout (milliseconds or with a unit).
	// Defaults to 0 (server default).
	StatementTimeout time.Duration

	// LockTimeout is applied as lock_timeout (at connection start in direct
	// and session modes, per transaction in transaction mode). URL key:
	// lock_timeout. Defaults to 0 (server default).
	LockTimeout time.Duration

	// IdleInTransactionTimeout is applied per transaction as
	// idle_in_transaction_session_timeout. URL key: the same name.
	// Defaults to 0 (server default).
	IdleInTransactionTimeout time.Duration

	// Session: server settings and the transactions poolsafe starts. In
	// transaction mode settings are applied in every transaction, since no
	// session outlives one.
	//
	// SearchPath is applied as search_path (at connection start in direct
	// and session modes, per transaction in transaction mode). URL keys:
	// search_path, schema (Prisma), currentSchema (JDBC). Defaults to ""
	// (server default).
	SearchPath string

	// Settings are further server settings (GUCs), applied like
	// SearchPath. Unknown URL keys land here. Defaults to none.
	Settings map[string]string

	// Isolation is the isolation level of transactions started by the
	// library. URL key: default_transaction_isolation. Defaults to
	// sql.LevelReadCommitted.
	Isolation sql.IsolationLevel

	// Observability: what is logged. No URL key or environment variable.
	//
	// Logger receives failed queries (level Warn) and, with SlowQuery,
	// slow ones (level Info), with the SQL, duration and error kind.
	// Defaults to nil: no logging.
	Logger *slog.Logger

	// SlowQuery is the duration above which a query is logged at level
	// Info when Logger is set. Defaults to 0: slow queries are not logged.
	SlowQuery time.Duration

	// LogArgs includes query arguments in log records. Defaults to false:
	// arguments are redacted (only their count is logged).
	LogArgs bool

	// src is what Parse read from URL, kept while URL is unchanged.
	src *connString
}

// Notes says, one line per key, what [Parse] or [FromEnv] did with the
// connection-string keys it removed or moved into fields, so a
// surprising URL can be explained. It never contains the password.
func (c Config) Notes() []string {
	if c.src == nil || c.src.raw != c.URL {
		return nil
	}
	return slices.Clone(c.src.notes)
}

// WithDefaults returns a copy of c with every unset field at its default
// and PoolMode inferred from the URL when empty. It does not validate:
// call [Config.Validate] for that.
func (c Config) WithDefaults() Config {
	if c.PoolMode == "" {
		if p, err := c.source(); err == nil {
			c.PoolMode = p.mode
		}
	}
	return c.withDefaults()
}

// withDefaults sets every unset field, PoolMode included, to its default.
func (c Config) withDefaults() Config {
	if c.Driver == "" {
		c.Driver = DefaultDriver
	}
	if c.PoolMode == "" {
		c.PoolMode = Direct
	}
	if c.PgxExecMode == "" {
		c.PgxExecMode = ExecModeExec
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = min(DefaultMaxIdleConns, c.MaxOpenConns)
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = DefaultConnMaxLifetime
	}
	if c.ConnMaxIdleTime == 0 {
		c.ConnMaxIdleTime = DefaultConnMaxIdleTime
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.SSLMode == "" {
		// PGSSLMODE is every libpq program's default; poolsafe always
		// writes sslmode for the driver, so it must honour it itself.
		c.SSLMode = cmp.Or(os.Getenv("PGSSLMODE"), DefaultSSLMode)
	}
	if c.Isolation == sql.LevelDefault {
		c.Isolation = DefaultIsolation
	}
	return c
}

// Direct returns the configuration of a session-capable connection to the
// same database, for work that needs a session (migrations, LISTEN,
// advisory locks): c itself unless c is in transaction mode, else c with
// URL replaced by DirectURL and the pool mode inferred from it (direct
// unless it says otherwise). Every field set explicitly — SSLMode,
// timeouts, Driver, ApplicationName, Settings — is kept; what [Parse] or
// [FromEnv] read from URL's keys is not: DirectURL's own keys (its sslmode,
// say) apply, as they would to a Config built by hand.
func (c Config) Direct() (Config, error) {
	if c.WithDefaults().PoolMode != Transaction {
		return c, nil
	}
	if c.DirectURL == "" {
		return Config{}, fieldErr("DirectURL", "is required for a session when URL is a transaction pooler; set it (Prisma's directUrl, DIRECT_URL)")
	}
	p, err := parseConnString(c.DirectURL)
	if err != nil {
		return Config{}, inDirectURL(err)
	}
	d := c.withoutURLKeys()
	d.URL, d.DirectURL, d.src = c.DirectURL, "", p
	d.PoolMode = p.mode
	if d.PoolMode == "" {
		d.PoolMode = Direct
	}
	return d, nil
}

// withoutURLKeys returns c without what Parse read from c.URL's keys into
// its fields and Settings (the fields that still hold the value read), so
// that another URL — DirectURL, a replica's — is read on its own terms, as
// it is when c was built by hand: only what was set explicitly carries
// over.
func (c Config) withoutURLKeys() Config {
	if c.src == nil || c.src.raw != c.URL {
		return c // nothing was read into c's fields yet
	}
	var read Config
	if err := c.src.fill(&read); err != nil {
		return c
	}
	for i := range keys {
		k := &keys[i]
		if k.field == "" || !k.readIntoConfig() || c.src.fromEnv[k.field] {
			continue
		}
		if f := read.fieldOf(k); !f.IsZero() && f.Equal(c.fieldOf(k)) {
			c.fieldOf(k).SetZero()
		}
	}
	if len(read.Settings) > 0 {
		m := maps.Clone(c.Settings)
		for name, v := range read.Settings {
			if k := keyNamed[name]; k != nil && c.src.fromEnv[k.field] {
				continue // a server timeout's "0" from a variable
			}
			if m[name] == v {
				delete(m, name)
			}
		}
		c.Settings = m
	}
	if c.PoolMode == c.src.mode {
		c.PoolMode = ""
	}
	return c
}

// inDirectURL makes an error about reading DirectURL name that field.
func inDirectURL(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fieldErr("DirectURL", "%s: %s", fe.Field, fe.Problem)
	}
	return fieldErr("DirectURL", "cannot be read")
}

// TxSettings returns the server settings to apply at the start of each
// transaction with set_config(name, value, true), in a stable order:
// statement_timeout, lock_timeout, idle_in_transaction_session_timeout,
// search_path, then Settings by name. In direct and session modes these are
// also sent at connection start, so applying them again is harmless.
func (c Config) TxSettings() [][2]string {
	var out [][2]string
	add := func(name string, d time.Duration) {
		if d > 0 {
			out = append(out, [2]string{name, formatMillis(d)})
		}
	}
	add("statement_timeout", c.StatementTimeout)
	add("lock_timeout", c.LockTimeout)
	add("idle_in_transaction_session_timeout", c.IdleInTransactionTimeout)
	if c.SearchPath != "" {
		out = append(out, [2]string{"search_path", c.SearchPath})
	}
	for _, k := range slices.Sorted(maps.Keys(c.Settings)) {
		if c.timeoutSet(k) {
			continue // the field wins over a "0" kept in Settings
		}
		out = append(out, [2]string{k, c.Settings[k]})
	}
	return out
}

// timeoutSet reports whether name is a server timeout whose field is set.
func (c Config) timeoutSet(name string) bool {
	switch name {
	case "statement_timeout":
		return c.StatementTimeout > 0
	case "lock_timeout":
		return c.LockTimeout > 0
	case "idle_in_transaction_session_timeout":
		return c.IdleInTransactionTimeout > 0
	}
	return false
}

func formatMillis(d time.Duration) string {
	ms := d.Milliseconds()
	if ms == 0 && d > 0 {
		ms = 1 // PostgreSQL timeouts have millisecond resolution; 0 would mean "off".
	}
	return fmt.Sprintf("%dms", ms)
}

// String describes c with passwords redacted.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("driverconf.Config{")
	fmt.Fprintf(&b, "URL: %q", RedactURL(c.URL))
	if c.DirectURL != "" {
		fmt.Fprintf(&b, ", DirectURL: %q", RedactURL(c.DirectURL))
	}
	if len(c.ReplicaURLs) > 0 {
		fmt.Fprintf(&b, ", ReplicaURLs: %q", redactAll(c.ReplicaURLs))
	}
	fmt.Fprintf(&b, ", Driver: %q, PoolMode: %q", c.Driver, c.PoolMode)
	if c.PgxExecMode != "" && c.Driver != PQ {
		fmt.Fprintf(&b, ", PgxExecMode: %q", c.PgxExecMode)
	}
	fmt.Fprintf(&b, ", MaxOpenConns: %d, MaxIdleConns: %d", c.MaxOpenConns, c.MaxIdleConns)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ConnMaxLifetime", c.ConnMaxLifetime}, {"ConnMaxIdleTime", c.ConnMaxIdleTime},
		{"AcquireTimeout", c.AcquireTimeout}, {"ConnectTimeout", c.ConnectTimeout},
		{"StatementTimeout", c.StatementTimeout}, {"LockTimeout", c.LockTimeout},
		{"IdleInTransactionTimeout", c.IdleInTransactionTimeout},
	} {
		if d.v != 0 {
			fmt.Fprintf(&b, ", %s: %s", d.name, d.v)
		}
	}
	if c.SearchPath != "" {
		fmt.Fprintf(&b, ", SearchPath: %q", c.SearchPath)
	}
	if c.ApplicationName != "" {
		fmt.Fprintf(&b, ", ApplicationName: %q", c.ApplicationName)
	}
	if c.SSLMode != "" {
		fmt.Fprintf(&b, ", SSLMode: %q", c.SSLMode)
	}
	if c.Isolation != sql.LevelDefault {
		fmt.Fprintf(&b, ", Isolation: %q", c.Isolation.String())
	}
	if len(c.Settings) > 0 {
		fmt.Fprintf(&b, ", Settings: %v", c.Settings)
	}
	b.WriteString("}")
	return b.String()
}

// LogValue implements slog.LogValuer with passwords redacted.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("url", RedactURL(c.URL)),
		slog.String("driver", string(c.Driver)),
		slog.String("pool_mode", string(c.PoolMode)),
		slog.Int("max_open_conns", c.MaxOpenConns),
		slog.Int("max_idle_conns", c.MaxIdleConns),
	}
	if c.DirectURL != "" {
		attrs = append(attrs, slog.String("direct_url", RedactURL(c.DirectURL)))
	}
	if len(c.ReplicaURLs) > 0 {
		attrs = append(attrs, slog.Any("replica_urls", redactAll(c.ReplicaURLs)))
	}
	if c.PgxExecMode != "" && c.Driver != PQ {
		attrs = append(attrs, slog.String("pgx_exec_mode", string(c.PgxExecMode)))
	}
	return slog.GroupValue(attrs...)
}

// redactAll is RedactURL over a list.
func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = RedactURL(u)
	}
	return out
}
