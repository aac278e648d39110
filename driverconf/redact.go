package driverconf

import (
	"net/url"
	"strings"
)

const redacted = "xxxxx"

// RedactURL returns the connection string s with any password replaced by
// "xxxxx", in URL or key=value form. A string it cannot read comes back as
// a placeholder rather than risk showing a password.
func RedactURL(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := parsePostgresURL(s)
		if err != nil {
			return "(unreadable connection URL)"
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), redacted)
			}
		}
		q, err := splitQuery(u.RawQuery)
		if err != nil {
			return "(unreadable connection URL)"
		}
		changed := false
		for i := range q {
			if isSecretKey(q[i].k) {
				q[i].v, changed = redacted, true
			}
		}
		if changed {
			parts := make([]string, len(q))
			for i, e := range q {
				parts[i] = queryEscape(e.k) + "=" + queryEscape(e.v)
			}
			u.RawQuery = strings.Join(parts, "&")
		}
		return u.String()
	}
	pairs, err := splitDSN(s)
	if err != nil {
		return "(unreadable connection string)"
	}
	for i := range pairs {
		if isSecretKey(pairs[i].k) {
			pairs[i].v = redacted
		}
	}
	return joinDSN(pairs)
}

// queryEscape escapes s for a URL query as libpq reads one: %XX only, so a
// space is %20, not "+".
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// isSecretKey reports a key whose value is a secret, in any case: a key
// written "Password" is refused, but printed redacted all the same.
func isSecretKey(k string) bool {
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword")
}

// joinDSN writes pairs as a libpq key=value string, quoting every value.
func joinDSN(pairs []kv) string {
	var b strings.Builder
	for i, e := range pairs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.k)
		b.WriteString("='")
		for j := 0; j < len(e.v); j++ {
			if e.v[j] == '\'' || e.v[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(e.v[j])
		}
		b.WriteByte('\'')
	}
	return b.String()
}

// GoString is what %#v prints: the same as String, passwords redacted.
// Without it %#v would print the fields as they are, URL and DirectURL
// with their passwords.
func (c Config) GoString() string { return c.String() }
