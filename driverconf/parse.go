package driverconf

import (
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"
)

// connString is a connection string read once, sorted by the [keys] table.
type connString struct {
	raw      string            // as given
	conn     []kv              // libpq connection parameters (use passed), in input order
	values   map[string]string // keys read into fields, by the name given
	settings map[string]string // server settings from unknown keys and options
	mode     PoolMode          // inferred pool mode, "" when nothing says
	byKey    bool              // mode came from a key, not from the port
	notes    []string
	fromEnv  map[string]bool // fields FromEnv set from variables after reading the string: not the string's
}

type kv struct{ k, v string }

// Parse reads a connection string — a postgres:// or postgresql:// URL, or a
// libpq key=value DSN — into a Config. It infers PoolMode, moves pool and
// timeout keys into fields, and removes every key that is not a libpq
// connection parameter, so neither driver ever sends one as a startup
// parameter. [Config.Notes] says what it did with each removed key.
func Parse(rawURL string) (Config, error) {
	p, err := parseConnString(rawURL)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{URL: rawURL, src: p}
	if err := p.fill(&cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// source returns c.URL read: the reading Parse kept while URL is unchanged,
// else a new one.
func (c Config) source() (*connString, error) {
	if c.src != nil && c.src.raw == c.URL {
		return c.src, nil
	}
	return parseConnString(c.URL)
}

// parseConnString splits a connection string into its parts and infers the
// pool mode. Errors never quote the string (it may hold a password).
func parseConnString(raw string) (*connString, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, fieldErr("URL", "is empty; set it to a postgres:// URL or a key=value DSN")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fieldErr("URL", "contains a NUL byte")
	}
	var pairs []kv
	var err error
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		pairs, err = splitURL(s)
	} else if i := strings.Index(s, "://"); i > 0 && isURLScheme(s[:i]) {
		// Another URL scheme; "://" further on (a quoted DSN password)
		// does not make a key=value string a URL.
		return nil, fieldErr("URL", "scheme must be postgres:// or postgresql://")
	} else {
		pairs, err = splitDSN(s)
	}
	if err != nil {
		return nil, err
	}
	p := &connString{raw: raw, values: map[string]string{}, settings: map[string]string{}, fromEnv: map[string]bool{}}
	return p, p.classify(pairs)
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

// classify sorts pairs by what the table says happens to each key.
func (p *connString) classify(pairs []kv) error {
	var explicit PoolMode
	var explicitKey, hintKey, port string
	seen := map[string]bool{}
	for _, e := range pairs {
		if seen[e.k] && e.k != "options" {
			return fieldErr(e.k, "is given more than once")
		}
		seen[e.k] = true
		k := keyNamed[e.k]
		switch {
		case k == nil && isSecretKey(e.k):
			// "Password" is no libpq key, and as a server setting its
			// value — the password — would be sent and printed.
			return fieldErr(e.k, "is not a connection parameter (keys are case-sensitive): write %s", strings.ToLower(e.k))
		case k == nil:
			if err := p.addSetting(e.k, e.v, "URL key "+e.k); err != nil {
				return err
			}
		case k.use == passed:
			p.conn = append(p.conn, e)
			if e.k == "port" {
				port = e.v
			}
		case k.use == hint:
			mode, err := k.impliedMode(e.v)
			if err != nil {
				return fieldErr(e.k, "%v", err)
			}
			if k.field == "PoolMode" {
				explicit, explicitKey = mode, e.k+"="+e.v
			} else if mode == Transaction && hintKey == "" {
				hintKey = e.k + "=" + e.v
			}
			p.notes = append(p.notes, fmt.Sprintf("removed %s=%s: pool-mode hint", e.k, e.v))
		case k.use == removed:
			p.notes = append(p.notes, fmt.Sprintf("removed %s: %s", e.k, k.why))
		case k.value == optionList:
			if err := p.parseOptions(e.v); err != nil {
				return err
			}
			p.notes = append(p.notes, "removed options: its -c settings moved to Config fields")
		default:
			p.values[e.k] = e.v
			if k.field != "" && k.use != sent {
				p.notes = append(p.notes, fmt.Sprintf("moved %s=%s to Config.%s", e.k, e.v, k.field))
			}
		}
	}
	switch {
	case explicit != "" && hintKey != "" && explicit != Transaction:
		return fieldErr("pool_mode", "%s conflicts with %s, which means transaction mode; remove one", explicitKey, hintKey)
	case explicit != "":
		p.mode, p.byKey = explicit, true
	case hintKey != "":
		p.mode, p.byKey = Transaction, true
	case hasPort(port, "6543"):
		p.mode = Transaction
		p.notes = append(p.notes, "port 6543 (Supabase transaction pooler): transaction mode")
	}
	return nil
}

// given returns the names of k that the connection string gives a value
// to be read, in k's order.
func (p *connString) given(k *key) []string {
	var names []string
	for _, n := range k.names() {
		if _, ok := p.values[n]; ok {
			names = append(names, n)
		}
	}
	return names
}

// poolKey returns a key given that Open applies to its pool, "" if none.
func (p *connString) poolKey() string {
	for i := range keys {
		if g := p.given(&keys[i]); keys[i].use == pool && len(g) > 0 {
			return g[0]
		}
	}
	return ""
}

func hasPort(ports, want string) bool {
	for _, p := range strings.Split(ports, ",") {
		if strings.TrimSpace(p) == want {
			return true
		}
	}
	return false
}

// parseOptions reads libpq's options value: "-c name=value" or
// "--name=value" items separated by spaces, with backslash escapes. A name
// that is a key read into a field sets that field; any other is a setting.
func (p *connString) parseOptions(v string) error {
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
		if k := keyNamed[name]; k != nil && k.readIntoConfig() {
			p.values[name] = val
			continue
		}
		if err := p.addSetting(name, val, "options"); err != nil {
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
func (p *connString) addSetting(name, val, from string) error {
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
var errBadURL = fieldErr("URL", "is not a valid postgres:// URL; percent-encode special characters (such as / @ : # ? %% and spaces) in the user name, the password and query values")

// parsePostgresURL parses a postgres:// URL, refusing what a PostgreSQL URL
// cannot have: a fragment, or a host with an empty port. Both come from an
// unencoded '#', '/' or ':' in a password, and would otherwise leave the rest
// of the password in the "host" or "fragment" for any printout to show.
func parsePostgresURL(raw string) (*url.URL, error) {
	parse, hosts, err := setHostsAside(raw)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(parse)
	if err != nil || u.Fragment != "" || u.RawFragment != "" || strings.Contains(raw, "#") ||
		u.Opaque != "" || strings.HasSuffix(u.Host, ":") || strings.Contains(u.Host, ":,") ||
		strings.Contains(u.EscapedPath(), "@") {
		// An "@" left in the path (not %40) is the real host's: an
		// unencoded "/" in the password ended the authority early
		// (postgres://user:12/word@host/db).
		return nil, errBadURL
	}
	if userinfo(raw, "/") != userinfo(raw, "/?") {
		// libpq ends the user name and password at the first "@" before
		// the first "/"; Go's parser ends the authority at a "?" too. They
		// disagree when the password holds an unencoded "?", whose rest
		// would become a query key and value
		// (postgres://app:5432?tenant=word@host/db).
		return nil, errBadURL
	}
	if hosts != "" {
		u.Host = hosts
	}
	if u.User == nil && strings.Contains(u.RawQuery, "@") {
		// No user name, but an "@" in the query: the password held "/"
		// and "?", and its rest and the real host went into the query
		// (postgres://app:12/ab?x=word@host/db). A query value that
		// really holds an "@" (with the user from PGUSER) must then be
		// written %40.
		return nil, errBadURL
	}
	return u, nil
}

// hostsPlaceholder stands in for a host list Go's URL parser cannot read.
const hostsPlaceholder = "poolsafe-hosts.invalid"

// setHostsAside takes out of a postgres:// URL a host list that libpq and
// pgx accept but Go's URL parser refuses — several hosts with ports
// (h1:5433,h2), IPv6 hosts with ports in a list, a percent-encoded socket
// directory (%2Ftmp) — and returns the URL with a placeholder host, and
// the list decoded, each item host:port ([host]:port for IPv6), for u.Host.
// Other URLs come back unchanged, with no list.
func setHostsAside(raw string) (string, string, error) {
	start, end := authority(raw, "/?#")
	if at := strings.LastIndex(raw[start:end], "@"); at >= 0 {
		start += at + 1
	}
	list := raw[start:end]
	if !strings.Contains(list, ",") && strings.Count(list, "%") == strings.Count(list, "%25") {
		return raw, "", nil // one host, which Go reads (an IPv6 zone is written %25)
	}
	items := strings.Split(list, ",")
	for i, item := range items {
		host, port := item, ""
		if strings.HasPrefix(item, "[") {
			j := strings.Index(item, "]")
			if j < 0 {
				return "", "", errBadURL
			}
			host, port = item[1:j], item[j+1:]
			if port != "" && !strings.HasPrefix(port, ":") {
				return "", "", errBadURL
			}
			port = strings.TrimPrefix(port, ":")
			if port == "" && strings.HasSuffix(item, ":") {
				return "", "", errBadURL
			}
		} else if j := strings.LastIndex(item, ":"); j >= 0 {
			host, port = item[:j], item[j+1:]
			if port == "" {
				return "", "", errBadURL // an unencoded ':' in a password, as parsePostgresURL says
			}
		}
		h, err := url.PathUnescape(host)
		if err != nil || strings.ContainsAny(h, "@,") {
			return "", "", errBadURL
		}
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		if port != "" {
			h += ":" + port
		}
		items[i] = h
	}
	return raw[:start] + hostsPlaceholder + raw[end:], strings.Join(items, ","), nil
}

// userinfo returns the user name and password part of a postgres:// URL as
// a parser reads it that ends the authority at the first of ends: the text
// before the authority's first "@" (libpq), or before its last (Go's
// net/url) when "?" ends the authority too; "" when there is none.
func userinfo(raw, ends string) string {
	start, end := authority(raw, ends)
	auth := raw[start:end]
	at := strings.Index(auth, "@")
	if strings.Contains(ends, "?") {
		at = strings.LastIndex(auth, "@")
	}
	if at < 0 {
		return ""
	}
	return auth[:at]
}

// authority returns where a postgres:// URL's authority starts and ends,
// for a parser that ends it at the first of ends.
func authority(raw, ends string) (start, end int) {
	start, end = strings.Index(raw, "://")+3, len(raw)
	if i := strings.IndexAny(raw[start:], ends); i >= 0 {
		end = start + i
	}
	return start, end
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
		// libpq decodes %XX only: a "+" is a plus sign, not a space.
		k, err1 := url.PathUnescape(rk)
		v, err2 := url.PathUnescape(rv)
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

// fill copies the keys read into fields into c's fields that are still
// unset: explicitly set fields win. Of two names of one key, the first in
// the table wins.
func (p *connString) fill(c *Config) error {
	for i := range keys {
		k := &keys[i]
		if !k.readIntoConfig() || k.value == optionList {
			continue
		}
		given := p.given(k)
		if len(given) == 0 {
			continue
		}
		if k.oneName && len(given) > 1 {
			return fieldErr(given[0], "conflicts with %s; keep one", given[1])
		}
		if k.field != "" && (!c.fieldOf(k).IsZero() || k.use == setting && c.Settings[k.name] == "0") {
			continue // set explicitly; a server timeout's explicit 0 is kept in Settings
		}
		v, err := k.value.parse(p.values[given[0]], false)
		if err != nil {
			return fieldErr(given[0], "%v", err)
		}
		if k.field != "" {
			c.set(k, v)
		}
	}
	if c.PoolMode == "" {
		c.PoolMode = p.mode
	}
	if len(p.settings) > 0 {
		merged := maps.Clone(p.settings)
		maps.Copy(merged, c.Settings) // explicit settings win
		c.Settings = merged
	}
	return nil
}
