package driverconf

import (
	"database/sql"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// driverSupport lists which drivers understand a libpq connection parameter.
type driverSupport struct{ pgx, pq bool }

var both = driverSupport{pgx: true, pq: true}

// connParams are the libpq connection parameters passed through to the
// driver, with the drivers that understand them. A key one driver lacks is
// an error for that driver rather than a startup parameter the server or
// pooler would reject.
var connParams = map[string]driverSupport{
	"host":                     both,
	"hostaddr":                 {pq: true},
	"port":                     both,
	"dbname":                   both,
	"user":                     both,
	"password":                 both,
	"passfile":                 both,
	"sslcert":                  both,
	"sslkey":                   both,
	"sslrootcert":              both,
	"sslsni":                   both,
	"sslnegotiation":           both,
	"sslpassword":              {pgx: true},
	"sslcertmode":              {pgx: true},
	"ssl_min_protocol_version": {pq: true},
	"ssl_max_protocol_version": {pq: true},
	"krbsrvname":               both,
	"krbspn":                   both,
	"target_session_attrs":     both,
	"load_balance_hosts":       {pq: true},
	"service":                  both,
	"servicefile":              {pgx: true},
	"channel_binding":          {pgx: true},
	"require_auth":             {pgx: true},
	"min_protocol_version":     both,
	"max_protocol_version":     both,
}

// fieldKeys are keys whose values move into Config fields.
var fieldKeys = map[string]bool{
	"application_name": true, "fallback_application_name": true,
	"connect_timeout": true, "sslmode": true, "driver": true,
	"search_path": true, "schema": true, "currentSchema": true,
	"statement_timeout": true, "lock_timeout": true,
	"idle_in_transaction_session_timeout": true,
	"default_transaction_isolation":       true,
	"default_query_exec_mode":             true,
	"options":                             true,
	"client_encoding":                     true,
	// pool sizing from Prisma and pgxpool
	"connection_limit": true, "pool_timeout": true,
	"pool_max_conns": true, "pool_min_conns": true,
	"pool_max_conn_lifetime": true, "pool_max_conn_idle_time": true,
}

// fieldOf names the Config field each field key (other than those
// libpq itself knows) moves into, for Notes.
var fieldOf = map[string]string{
	"driver": "Driver", "search_path": "SearchPath", "schema": "SearchPath",
	"currentSchema": "SearchPath", "statement_timeout": "StatementTimeout",
	"lock_timeout": "LockTimeout", "idle_in_transaction_session_timeout": "IdleInTransactionTimeout",
	"default_transaction_isolation": "Isolation", "default_query_exec_mode": "PgxExecMode",
	"connection_limit": "MaxOpenConns", "pool_max_conns": "MaxOpenConns",
	"pool_min_conns": "MaxIdleConns", "pool_timeout": "AcquireTimeout",
	"pool_max_conn_lifetime": "ConnMaxLifetime", "pool_max_conn_idle_time": "ConnMaxIdleTime",
}

// hintKeys are pool-mode hints. All are removed.
var hintKeys = map[string]bool{
	"pool_mode": true, "pgbouncer": true, "no_prepare": true,
	"statement_cache_size": true, "prepare_threshold": true,
	"prepareThreshold": true, "raw_sql": true,
}

// foreignKeys are other drivers' and tools' keys, removed because poolsafe
// chooses those settings itself or they mean nothing to PostgreSQL.
var foreignKeys = map[string]string{
	"binary_parameters":              "lib/pq setting; poolsafe sets it",
	"disable_prepared_binary_result": "lib/pq setting",
	"sslinline":                      "lib/pq setting",
	"statement_cache_capacity":       "pgx setting; poolsafe sets it per pool mode",
	"description_cache_capacity":     "pgx setting; poolsafe sets it per pool mode",
	"prefer_simple_protocol":         "pgx setting; use PgxExecMode",
	"pool_health_check_period":       "pgxpool setting",
	"pool_max_conn_lifetime_jitter":  "pgxpool setting",
	"socket_timeout":                 "Prisma setting; use context deadlines",
	"sslaccept":                      "Prisma setting; use sslmode",
	"sslidentity":                    "Prisma setting; use sslcert/sslkey",
	"datestyle":                      "both drivers require ISO",
}

// parsed is the result of reading a connection string.
type parsed struct {
	conn     []kv              // libpq connection parameters, in input order
	fields   map[string]string // field keys and their raw values
	settings map[string]string // server settings from unknown keys and options
	mode     PoolMode          // inferred pool mode, "" when nothing says
	byKey    bool              // mode came from a key, not from the port
	notes    []string
}

type kv struct{ k, v string }

func (p *parsed) get(k string) (string, bool) {
	for _, e := range p.conn {
		if e.k == k {
			return e.v, true
		}
	}
	return "", false
}

// Parse reads a connection string — a postgres:// or postgresql:// URL, or a
// libpq key=value DSN — into a Config. It infers PoolMode, moves pool and
// timeout keys into fields, and removes every key that is not a libpq
// connection parameter, so neither driver ever sends one as a startup
// parameter. [Config.Notes] says what it did with each removed key.
func Parse(rawURL string) (Config, error) {
	p, err := parseConn(rawURL)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{URL: rawURL, PoolMode: p.mode, notes: p.notes}
	if err := cfg.applyFields(p); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseConn splits a connection string into its parts and infers the pool
// mode. Errors never quote the string (it may hold a password).
func parseConn(raw string) (*parsed, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, fieldErr("URL", "is empty; set it to a postgres:// URL or a key=value DSN")
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return nil, fieldErr("URL", "contains a NUL byte")
	}
	var pairs []kv
	var err error
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		pairs, err = splitURL(raw)
	} else if i := strings.Index(raw, "://"); i > 0 && isURLScheme(raw[:i]) {
		// Another URL scheme; "://" further on (a quoted DSN password)
		// does not make a key=value string a URL.
		return nil, fieldErr("URL", "scheme must be postgres:// or postgresql://")
	} else {
		pairs, err = splitDSN(raw)
	}
	if err != nil {
		return nil, err
	}
	return classify(pairs)
}

// isURLScheme reports whether s is a URL scheme (RFC 3986: a letter, then
// letters, digits, "+", "-" or ".").
func isURLScheme(s string) bool {
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// isParamName reports whether k can name a connection parameter, a pooler
// or driver key or a server setting: letters, digits, "_", "." and "-".
func isParamName(k string) bool {
	for _, c := range k {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return k != ""
}

func classify(pairs []kv) (*parsed, error) {
	p := &parsed{fields: map[string]string{}, settings: map[string]string{}}
	var explicit PoolMode
	var explicitKey, hintKey string
	seen := map[string]bool{}
	for _, e := range pairs {
		if seen[e.k] && e.k != "options" {
			return nil, fieldErr(e.k, "is given more than once")
		}
		seen[e.k] = true
		switch {
		case connParams[e.k] != driverSupport{}:
			p.conn = append(p.conn, e)
		case hintKeys[e.k]:
			mode, err := hintMode(e.k, e.v)
			if err != nil {
				return nil, err
			}
			if e.k == "pool_mode" {
				explicit, explicitKey = mode, e.k+"="+e.v
			} else if mode == Transaction && hintKey == "" {
				hintKey = e.k + "=" + e.v
			}
			p.notes = append(p.notes, fmt.Sprintf("removed %s=%s: pool-mode hint", e.k, e.v))
		case fieldKeys[e.k]:
			if e.k == "options" {
				if err := parseOptions(e.v, p); err != nil {
					return nil, err
				}
				p.notes = append(p.notes, "removed options: its -c settings moved to Config fields")
				continue
			}
			p.fields[e.k] = e.v
			if f := fieldOf[e.k]; f != "" {
				p.notes = append(p.notes, fmt.Sprintf("moved %s=%s to Config.%s", e.k, e.v, f))
			}
		case foreignKeys[e.k] != "":
			p.notes = append(p.notes, fmt.Sprintf("removed %s: %s", e.k, foreignKeys[e.k]))
		default:
			if err := addSetting(p, e.k, e.v, "URL key "+e.k); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case explicit != "" && hintKey != "" && explicit != Transaction:
		return nil, fieldErr("pool_mode", "%s conflicts with %s, which means transaction mode; remove one", explicitKey, hintKey)
	case explicit != "":
		p.mode, p.byKey = explicit, true
	case hintKey != "":
		p.mode, p.byKey = Transaction, true
	default:
		if port, ok := p.get("port"); ok && hasPort(port, "6543") {
			p.mode = Transaction
			p.notes = append(p.notes, "port 6543 (Supabase transaction pooler): transaction mode")
		}
	}
	return p, nil
}

func hasPort(ports, want string) bool {
	for _, p := range strings.Split(ports, ",") {
		if strings.TrimSpace(p) == want {
			return true
		}
	}
	return false
}

// hintMode returns the mode a hint key implies, "" when it implies none.
func hintMode(k, v string) (PoolMode, error) {
	lv := strings.ToLower(strings.TrimSpace(v))
	switch k {
	case "pool_mode":
		switch PoolMode(lv) {
		case Direct, Session, Transaction:
			return PoolMode(lv), nil
		case "statement":
			return "", fieldErr(k, "statement pooling cannot run transactions; use transaction")
		}
		return "", fieldErr(k, "unknown pool mode %q; use direct, session or transaction", v)
	case "pgbouncer", "no_prepare", "raw_sql":
		b, err := strconv.ParseBool(lv)
		if err != nil {
			return "", fieldErr(k, "must be true or false, got %q", v)
		}
		if b {
			return Transaction, nil
		}
		return "", nil
	default: // statement_cache_size, prepare_threshold, prepareThreshold
		n, err := strconv.Atoi(lv)
		if err != nil || n < 0 {
			return "", fieldErr(k, "must be a non-negative integer, got %q", v)
		}
		if n == 0 {
			return Transaction, nil
		}
		return "", nil
	}
}

// parseOptions reads libpq's options value: "-c name=value" or
// "--name=value" items separated by spaces, with backslash escapes.
func parseOptions(v string, p *parsed) error {
	words, err := splitOptionWords(v)
	if err != nil {
		return err
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		var setting string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			setting = words[i]
		case strings.HasPrefix(w, "-c") && len(w) > 2:
			setting = w[2:]
		case strings.HasPrefix(w, "--"):
			setting = w[2:]
		default:
			return fieldErr("options", "only -c name=value settings are supported, got %q", w)
		}
		name, val, ok := strings.Cut(setting, "=")
		if !ok || name == "" {
			return fieldErr("options", "setting %q must be name=value", setting)
		}
		name = strings.ReplaceAll(name, "-", "_")
		if fieldKeys[name] || name == "search_path" {
			p.fields[name] = val
			continue
		}
		if err := addSetting(p, name, val, "options"); err != nil {
			return err
		}
	}
	return nil
}

func splitOptionWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fieldErr("options", "ends with a lone backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// addSetting records a server setting (GUC) after checking its name.
func addSetting(p *parsed, name, val, from string) error {
	if !validSettingName(name) {
		return fieldErr(name, "is not a libpq connection parameter, a known pooler or driver key, or a valid server setting name")
	}
	p.settings[name] = val
	p.notes = append(p.notes, fmt.Sprintf("%s: %s moved to Config.Settings (applied per transaction in transaction mode)", from, name))
	return nil
}

// validSettingName accepts PostgreSQL GUC names: identifiers, optionally
// qualified with dots (custom settings such as app.tenant_id).
func validSettingName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return false
		}
		for i, c := range part {
			switch {
			case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			case c >= '0' && c <= '9' && i > 0:
			default:
				return false
			}
		}
	}
	return true
}

// errBadURL never quotes the URL: parts of it may be the password.
var errBadURL = fieldErr("URL", "is not a valid postgres:// URL; percent-encode special characters (such as / @ : # ? %% and spaces) in the user name and password")

// parsePostgresURL parses a postgres:// URL, refusing what a PostgreSQL URL
// cannot have: a fragment, or a host with an empty port. Both come from an
// unencoded '#', '/' or ':' in a password, and would otherwise leave the rest
// of the password in the "host" or "fragment" for any printout to show.
func parsePostgresURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Fragment != "" || u.RawFragment != "" || strings.Contains(raw, "#") ||
		u.Opaque != "" || strings.HasSuffix(u.Host, ":") || strings.Contains(u.Host, ":,") ||
		strings.Contains(u.EscapedPath(), "@") {
		// An "@" left in the path (not %40) is the real host's: an
		// unencoded "/" in the password ended the authority early
		// (postgres://user:12/word@host/db).
		return nil, errBadURL
	}
	return u, nil
}

// splitURL reads a postgres:// URL into key/value pairs, libpq names.
func splitURL(raw string) ([]kv, error) {
	u, err := parsePostgresURL(raw)
	if err != nil {
		return nil, err
	}
	var pairs []kv
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			pairs = append(pairs, kv{"user", name})
		}
		if pw, ok := u.User.Password(); ok {
			pairs = append(pairs, kv{"password", pw})
		}
	}
	if u.Host != "" {
		var hosts, ports []string
		anyPort := false
		for _, hp := range strings.Split(u.Host, ",") {
			h, port := splitHostPort(hp)
			if port != "" {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					return nil, fieldErr("port", "must be a number from 1 to 65535 (not shown: it may be the start of a password; percent-encode special characters such as / ? @ : in the password)")
				}
				anyPort = true
			}
			hosts = append(hosts, h)
			ports = append(ports, port)
		}
		pairs = append(pairs, kv{"host", strings.Join(hosts, ",")})
		if anyPort {
			for i := range ports {
				if ports[i] == "" {
					ports[i] = "5432" // libpq: an empty item means the default port
				}
			}
			pairs = append(pairs, kv{"port", strings.Join(ports, ",")})
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		pairs = append(pairs, kv{"dbname", db})
	}
	query, err := splitQuery(u.RawQuery)
	if err != nil {
		return nil, err
	}
	for _, e := range query {
		if e.k == "user" || e.k == "password" || e.k == "host" || e.k == "port" || e.k == "dbname" {
			// Query keys override the authority part, as in libpq.
			pairs = removeKey(pairs, e.k)
		}
		pairs = append(pairs, e)
	}
	return pairs, nil
}

// splitQuery reads a URL query string in order. Only "&" separates keys.
func splitQuery(raw string) ([]kv, error) {
	var out []kv
	seen := map[string]bool{}
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		rk, rv, _ := strings.Cut(part, "=")
		k, err1 := url.QueryUnescape(rk)
		v, err2 := url.QueryUnescape(rv)
		if err1 != nil || err2 != nil || k == "" {
			return nil, fieldErr("URL", "has a malformed query string (check %%-escapes and separators)")
		}
		if !isParamName(k) {
			// No parameter or setting has such a name: the query began
			// inside an unencoded password ("?" in it), and the key is
			// the password's rest. Echo none of it.
			return nil, errBadURL
		}
		if seen[k] {
			return nil, fieldErr(k, "is given more than once")
		}
		seen[k] = true
		out = append(out, kv{k, v})
	}
	return out, nil
}

func removeKey(pairs []kv, k string) []kv {
	out := pairs[:0]
	for _, e := range pairs {
		if e.k != k {
			out = append(out, e)
		}
	}
	return out
}

func splitHostPort(hp string) (host, port string) {
	if strings.HasPrefix(hp, "[") {
		if i := strings.Index(hp, "]"); i >= 0 {
			host = hp[1:i]
			if rest := hp[i+1:]; strings.HasPrefix(rest, ":") {
				port = rest[1:]
			}
			return host, port
		}
	}
	if i := strings.LastIndex(hp, ":"); i >= 0 {
		return hp[:i], hp[i+1:]
	}
	return hp, ""
}

// splitDSN reads a libpq key=value string.
func splitDSN(s string) ([]kv, error) {
	var pairs []kv
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' }
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return pairs, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, fieldErr("URL", "key=value connection string: missing \"=\" after the word at byte %d", start)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					closed = true
					i++
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fieldErr(key, "unterminated quoted value")
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		pairs = append(pairs, kv{key, val.String()})
	}
}

// applyFields copies field keys from the connection string into c where the
// field is still unset. Explicitly set fields win.
func (c *Config) applyFields(p *parsed) error {
	f := p.fields
	setStr := func(dst *string, key string) {
		if v, ok := f[key]; ok && *dst == "" {
			*dst = v
		}
	}
	setDur := func(dst *time.Duration, key string, parse func(string) (time.Duration, error)) error {
		v, ok := f[key]
		if !ok || *dst != 0 {
			return nil
		}
		d, err := parse(v)
		if err != nil {
			return fieldErr(key, "%v", err)
		}
		*dst = d
		if d == 0 && gucTimeouts[key] {
			c.setExplicitZero(key)
		}
		return nil
	}
	setInt := func(dst *int, key string) error {
		v, ok := f[key]
		if !ok || *dst != 0 {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fieldErr(key, "must be a non-negative integer, got %q", v)
		}
		*dst = n
		return nil
	}

	if v, ok := f["driver"]; ok && c.Driver == "" {
		d, err := parseDriver(v)
		if err != nil {
			return fieldErr("driver", "%v", err)
		}
		c.Driver = d
	}
	if v, ok := f["client_encoding"]; ok && !strings.EqualFold(strings.ReplaceAll(v, "-", ""), "utf8") {
		return fieldErr("client_encoding", "must be UTF8 (both drivers require it), got %q", v)
	}
	setStr(&c.ApplicationName, "application_name")
	setStr(&c.ApplicationName, "fallback_application_name")
	setStr(&c.SSLMode, "sslmode")
	setStr(&c.SearchPath, "search_path")
	setStr(&c.SearchPath, "schema")
	setStr(&c.SearchPath, "currentSchema")
	if v, ok := f["default_query_exec_mode"]; ok && c.PgxExecMode == "" {
		c.PgxExecMode = PgxExecMode(v)
	}
	if v, ok := f["default_transaction_isolation"]; ok && c.Isolation == sql.LevelDefault {
		lvl, err := parseIsolation(v)
		if err != nil {
			return fieldErr("default_transaction_isolation", "%v", err)
		}
		c.Isolation = lvl
	}
	for _, e := range []struct {
		dst   *time.Duration
		key   string
		parse func(string) (time.Duration, error)
	}{
		{&c.ConnectTimeout, "connect_timeout", parseSeconds},
		{&c.StatementTimeout, "statement_timeout", parseGUCDuration},
		{&c.LockTimeout, "lock_timeout", parseGUCDuration},
		{&c.IdleInTransactionTimeout, "idle_in_transaction_session_timeout", parseGUCDuration},
		{&c.AcquireTimeout, "pool_timeout", parseSeconds},
		{&c.ConnMaxLifetime, "pool_max_conn_lifetime", parseGoDuration},
		{&c.ConnMaxIdleTime, "pool_max_conn_idle_time", parseGoDuration},
	} {
		if err := setDur(e.dst, e.key, e.parse); err != nil {
			return err
		}
	}
	if _, a := f["connection_limit"]; a {
		if _, b := f["pool_max_conns"]; b {
			return fieldErr("connection_limit", "conflicts with pool_max_conns; keep one")
		}
	}
	for _, k := range []string{"connection_limit", "pool_max_conns"} {
		if err := setInt(&c.MaxOpenConns, k); err != nil {
			return err
		}
	}
	if err := setInt(&c.MaxIdleConns, "pool_min_conns"); err != nil {
		return err
	}
	if len(p.settings) > 0 {
		merged := make(map[string]string, len(p.settings)+len(c.Settings))
		for k, v := range p.settings {
			merged[k] = v
		}
		for k, v := range c.Settings {
			merged[k] = v
		}
		c.Settings = merged
	}
	return nil
}

// gucTimeouts are the server timeouts that Config keeps as durations, where
// zero means "the server's default" — not "disabled".
var gucTimeouts = map[string]bool{
	"statement_timeout": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true,
}

// setExplicitZero records a timeout set to 0 ("disabled") explicitly, as a
// setting, so that it is sent rather than taken for unset.
func (c *Config) setExplicitZero(key string) {
	if _, ok := c.Settings[key]; ok {
		return
	}
	m := make(map[string]string, len(c.Settings)+1)
	for k, v := range c.Settings {
		m[k] = v
	}
	m[key] = "0"
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
