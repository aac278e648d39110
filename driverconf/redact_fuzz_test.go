package driverconf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// pwUnits are the pieces FuzzRedaction builds passwords from besides its
// markers: the characters that end or change a URL's parts and a DSN's
// values (@ : / ? # % ' \ and space), alone and in the combinations people
// paste (a valid %-escape, an invalid one, "@host:" lookalikes).
var pwUnits = []string{"@", ":", "/", "?", "#", "%", "'", `\`, " ", "%41", "%zz", "@x:", ":/?#", "  ", `\'`}

// A marker is a fragment of a password that no output may contain: any
// output holding one printed part of the password. Two kinds: letters and
// digits, and six digits (a password's digits can pass for a port number).
func marker(i int, digits bool) string {
	if digits {
		return fmt.Sprintf("7391%02d", i%100)
	}
	return fmt.Sprintf("Qz%02dWk", i%100)
}

var markerPrefixes = []string{"Qz", "7391"}

// fuzzPassword builds a password from shape: each byte's low seven bits
// (modulo 20) pick a unit of pwUnits or, from 15 up, a marker — a digit
// marker when the byte's high bit is set; the password always holds at
// least one marker.
func fuzzPassword(shape []byte) (pw string, markers []string) {
	var b strings.Builder
	for i, c := range shape {
		if i == 48 {
			break
		}
		if u := int(c&0x7f) % 20; u < len(pwUnits) {
			b.WriteString(pwUnits[u])
			continue
		}
		m := marker(len(markers), c&0x80 != 0)
		markers = append(markers, m)
		b.WriteString(m)
	}
	if len(markers) == 0 {
		m := marker(0, len(shape)%2 == 1)
		markers = append(markers, m)
		b.WriteString(m)
	}
	return b.String(), markers
}

// encodeAll percent-encodes every byte but the unreserved ones (RFC 3986):
// the password as a careful user writes it into a URL.
func encodeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// quoteValue quotes v as a libpq key=value value.
func quoteValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// fuzzQueries are the query strings the URL forms carry: none, pooler
// keys that Parse moves into the Config (and describes in Notes), and a
// setting.
var fuzzQueries = []string{"", "sslmode=disable", "pgbouncer=true&search_path=app", "options=-c%20statement_timeout%3D5s&application_name=w", "driver=pq&connection_limit=3"}

// passwordForm is one way of writing a password into a connection string.
type passwordForm struct {
	name string
	// valid: Parse must accept it (the password is written correctly).
	valid bool
	// refusable: Parse may refuse it, and then must say how to write the
	// password (percent-encoding) — the raw password pasted into a URL.
	refusable bool
	make      func(pw, query string) string
}

var passwordForms = []passwordForm{
	{"URL, url.UserPassword", true, false, func(pw, q string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("app", pw), Host: "db.example.com:5432", Path: "/app", RawQuery: q}
		return u.String()
	}},
	{"URL, every byte encoded", true, false, func(pw, q string) string {
		return "postgres://app:" + encodeAll(pw) + "@db.example.com:5432/app" + withQuery(q)
	}},
	{"URL, not encoded", false, true, func(pw, q string) string {
		return "postgresql://app:" + pw + "@db.example.com:5432/app" + withQuery(q)
	}},
	{"URL, not encoded, no port", false, true, func(pw, q string) string {
		return "postgres://app:" + pw + "@db.example.com/app" + withQuery(q)
	}},
	{"URL query, encoded", true, false, func(pw, q string) string {
		return "postgres://app@db.example.com:5432/app?" + joinQuery("password="+queryEscape(pw), q)
	}},
	{"URL query, not encoded", false, true, func(pw, q string) string {
		return "postgres://app@db.example.com:5432/app?" + joinQuery("password="+pw, q)
	}},
	{"DSN, quoted", true, false, func(pw, q string) string {
		return "host=db.example.com port=5432 user=app dbname=app password=" + quoteValue(pw) + dsnPairs(q)
	}},
	{"DSN, not quoted", false, false, func(pw, q string) string {
		// libpq ends an unquoted value at whitespace, so a password with a
		// space cannot be written this way; its words after the first
		// would be keys of their own. The others may be refused, never
		// shown.
		return "host=db.example.com user=app password=" + strings.ReplaceAll(pw, " ", "") + dsnPairs(q)
	}},
	{"DSN, quoted first", true, false, func(pw, q string) string {
		return "password=" + quoteValue(pw) + " host=db.example.com user=app" + dsnPairs(q)
	}},
}

// dsnPairs writes a query string's pairs as key=value pairs, each
// preceded by a space.
func dsnPairs(q string) string {
	var b strings.Builder
	for _, kv := range strings.Split(q, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k, _ = url.PathUnescape(k)
		v, _ = url.PathUnescape(v)
		b.WriteString(" " + k + "=" + quoteValue(v))
	}
	return b.String()
}

func withQuery(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

func joinQuery(a, b string) string {
	if b == "" {
		return a
	}
	return a + "&" + b
}

// everyOutput gathers every text a configuration can show a person: the
// errors of Parse, FromEnv and Validate (and of building a connector, which
// does no I/O), String, %v, %+v, %#v, Notes, the slog records that carry
// the Config (text and JSON handlers), RedactURL — for the string as URL,
// DirectURL and one of the ReplicaURLs. It also returns Parse's error.
func everyOutput(connString string) (string, error) {
	var b strings.Builder
	line := func(s string) {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	show := func(c Config) {
		line(c.String())
		line(fmt.Sprintf("%v", c))
		line(fmt.Sprintf("%+v", c))
		line(fmt.Sprintf("%#v", c))
		line(fmt.Sprintf("%v", &c))
		line(strings.Join(c.Notes(), "\n"))
		var logs bytes.Buffer
		// Without the time: its digits could pass for a digit marker.
		opts := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}
		for _, h := range []slog.Handler{slog.NewTextHandler(&logs, opts), slog.NewJSONHandler(&logs, opts)} {
			slog.New(h).Info("config", "cfg", c, slog.Any("ptr", &c), slog.Group("g", "cfg", c))
		}
		line(logs.String())
		if err := c.Validate(); err != nil {
			line(err.Error())
			line(fmt.Sprintf("%+v", err))
		}
		if _, err := NewConnector(c); err != nil {
			line(err.Error())
		}
	}
	line(RedactURL(connString))
	cfg, parseErr := Parse(connString)
	if parseErr != nil {
		line(parseErr.Error())
		line(fmt.Sprintf("%+v", parseErr))
	}
	show(cfg)
	show(Config{URL: connString})
	show(Config{URL: "postgres://db.example.com/app", DirectURL: connString})
	show(Config{URL: "postgres://db.example.com/app", ReplicaURLs: []string{"postgres://replica.example.com/app", connString}})
	for _, env := range []map[string]string{
		{EnvDatabaseURL: connString, EnvDriver: "pq"},
		{EnvDatabaseURL: "postgres://db.example.com/app", EnvDirectURL: connString},
		{EnvDatabaseURL: "postgres://db.example.com/app", EnvReplicaURLs: connString},
	} {
		c, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			line(err.Error())
		}
		show(c)
	}
	return b.String(), parseErr
}

// FuzzRedaction writes passwords made of @ : / ? # % ' \ and spaces, in
// random combinations with marker fragments, into URLs (correctly
// percent-encoded, and not encoded at all) and key=value strings, and
// checks every output for any marker: no part of a password may be shown.
// A correctly written password must be accepted; a URL with a raw password
// may be refused, with an error that says to percent-encode, and that
// echoes none of it.
func FuzzRedaction(f *testing.F) {
	// Each seed is a password shape (see fuzzPassword: 0-14 pick a unit of
	// pwUnits, 15-19 a marker, +0x80 a digit marker) and a query index.
	seeds := []struct {
		shape []byte
		query uint8
	}{
		{[]byte{15, 0, 15}, 0},                      // Qz00Wk@Qz01Wk: the shape
		{[]byte{15, 0, 1, 2, 3, 4, 9, 15}, 0},       // Zq9@x:/?#%41secret, as in issue 10
		{[]byte{15, 1, 2, 3, 4, 5, 6, 7, 8, 15}, 1}, // every character once
		{[]byte{0x80 | 15, 2, 15}, 0},               // 739100/Qz01Wk: digits that parse as a port
		{[]byte{0x80 | 15, 1, 15, 0, 16}, 2},        // 739100:Qz01Wk@…
		{[]byte{15, 8, 15, 8, 15}, 3},               // spaces
		{[]byte{15, 6, 15, 7, 15}, 4},               // quote and backslash
		{[]byte{15, 10, 15}, 0},                     // an invalid %-escape
		{[]byte{15, 9, 15}, 1},                      // a valid %-escape
		{[]byte{4, 15}, 0},                          // # first
		{[]byte{2, 15}, 0},                          // / first
		{[]byte{0, 15}, 0},                          // @ first
		{[]byte{15, 4}, 0},                          // # last
		{[]byte{15, 11, 15}, 2},                     // @x: inside
		{[]byte{15, 12, 15}, 3},                     // :/?# inside
		{[]byte{15, 14, 15}, 4},                     // \' inside
		{[]byte{6, 15, 6}, 0},                       // quoted by hand
		{[]byte{7, 15}, 0},                          // a backslash first
		{[]byte{15, 13, 0x80 | 15}, 1},              // two spaces, a digit marker
	}
	for _, s := range seeds {
		f.Add(s.shape, s.query)
	}
	f.Fuzz(func(t *testing.T, shape []byte, query uint8) {
		pw, markers := fuzzPassword(shape)
		q := fuzzQueries[int(query)%len(fuzzQueries)]
		for _, form := range passwordForms {
			in := form.make(pw, q)
			out, err := everyOutput(in)
			for _, m := range markers {
				if strings.Contains(out, m) {
					at := strings.Index(out, m)
					t.Fatalf("%s: password %q: output shows %q:\n…%s…\ninput: %s", form.name, pw, m,
						out[max(0, at-200):min(len(out), at+200)], in)
				}
			}
			switch {
			case err == nil:
			case form.valid:
				t.Fatalf("%s: password %q written correctly, and Parse refuses it: %v\ninput: %s", form.name, pw, err, in)
			case !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("%s: Parse error %v does not match ErrInvalidConfig", form.name, err)
			case form.refusable && !strings.Contains(err.Error(), "percent-encode") && !strings.Contains(err.Error(), "%-escape"):
				t.Errorf("%s: password %q: the error does not say to percent-encode the password: %v", form.name, pw, err)
			}
			if err == nil && form.valid {
				// Accepted means read right: the driver gets this password.
				if got := parsedPassword(t, in); got != pw {
					t.Fatalf("%s: password %q read as %q\ninput: %s", form.name, pw, got, in)
				}
			}
		}
	})
}

// parsedPassword returns the password Parse read from connString.
func parsedPassword(t *testing.T, connString string) string {
	t.Helper()
	cfg, err := Parse(connString)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cfg.resolve()
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	for _, e := range r.conn {
		if e.k == "password" {
			return e.v
		}
	}
	return ""
}

// The markers must not occur in the queries the forms add, or a marker in
// an output would not prove a leak.
func TestFuzzRedactionQueriesHoldNoMarker(t *testing.T) {
	for _, q := range fuzzQueries {
		for _, p := range markerPrefixes {
			if strings.Contains(q, p) {
				t.Fatalf("query %q holds marker prefix %q", q, p)
			}
		}
	}
}
