package pqtest

// This file is added by poolsafe's peer runner (internal/peer) to its copy
// of lib/pq. The runner rewrites the suite's sql.Open calls to
// peerSQLOpen, so the test database opens through the "poolsafe" driver
// (which uses the real lib/pq or pgx, per POOLSAFE_PEER_DRIVER).

import (
	"database/sql"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"

	_ "github.com/scrapersky/poolsafe/driverconf" // registers "poolsafe"
)

func peerSQLOpen(driverName, dsn string) (*sql.DB, error) { return PeerSQLOpen(driverName, dsn) }

// DB is upstream's DB (the runner renames that one to _), except that a
// test whose connection parameters name a host other than a loopback
// address is skipped, saying so, instead of connecting there.
func DB(t testing.TB, conninfo ...string) (*sql.DB, error) {
	t.Helper()
	dsn := DSN(strings.Join(conninfo, " "))
	if host := peerForeignHost(dsn); host != "" {
		t.Skipf("peer: not run: it would connect to %s, and the peer suites send traffic to 127.0.0.1 only", host)
	}
	db, err := peerSQLOpen("postgres", dsn)
	if err != nil {
		t.Fatalf("pqtest.DB: %s", err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for i := len(cleanups[db]) - 1; i >= 0; i-- {
			cleanups[db][i]()
		}
		delete(cleanups, db)
		db.Close()
	})
	return db, db.Ping()
}

// peerForeignHost returns the first host the connection would reach that
// is not a loopback address, or "". With hostaddr, lib/pq connects to the
// addresses and uses host only as a name.
func peerForeignHost(dsn string) string {
	kvs, err := peerParse(dsn)
	if err != nil {
		return ""
	}
	host, addr := "", ""
	for _, kv := range kvs {
		switch kv[0] {
		case "host":
			host = kv[1]
		case "hostaddr":
			addr = kv[1]
		}
	}
	if addr != "" {
		host = addr
	}
	for _, h := range strings.Split(host, ",") {
		if h != "" && !peerLocal(h) {
			return h
		}
	}
	return ""
}

// PeerSQLOpen is sql.Open, except that driver "postgres" opens poolsafe on
// POOLSAFE_PEER_DSN with the test's own connection parameters on top.
// The suite's defaults (dbname=pqgo, user=pqgo) mean the test database and
// are dropped. A test that names a port connects to a server of its own
// (a scripted one): of POOLSAFE_PEER_DSN it gets only driver, pool_mode and
// sslmode. A host other than a loopback IP address (127.0.0.0/8, ::1) is
// refused before anything is sent.
func PeerSQLOpen(driverName, dsn string) (*sql.DB, error) {
	if driverName != "postgres" {
		return sql.Open(driverName, dsn)
	}
	base, err := peerParse(os.Getenv("POOLSAFE_PEER_DSN"))
	if err != nil || len(base) == 0 {
		return nil, fmt.Errorf("peer: POOLSAFE_PEER_DSN: %v", err)
	}
	test, err := peerParse(dsn)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	for _, kv := range test {
		if kv[0] == "port" {
			// A server of the test's own (upstream's scripted servers give
			// host and port): it gets the test's connection parameters and
			// the environment's (PGDATABASE, PGUSER, PGAPPNAME, as
			// pqtest.DSN sets them), not the stack's; the runner adds only
			// how poolsafe runs.
			base = peerKeep(base, "driver", "pool_mode", "sslmode")
			break
		}
	}
	for _, kv := range test {
		if kv[0] == "application_name" || kv[0] == "fallback_application_name" {
			// The test's own application name, not the runner's: remove
			// the runner's once, before the test's keys are merged, so
			// that a test giving both keys keeps both.
			base = peerDelete(base, "application_name")
		}
	}
	for _, kv := range test {
		if kv[0] == "dbname" && kv[1] == "pqgo" || kv[0] == "user" && kv[1] == "pqgo" {
			continue // the suite's name for the test database and role
		}
		base = peerSet(base, kv[0], kv[1])
	}
	var b strings.Builder
	for _, kv := range base {
		v := strings.ReplaceAll(strings.ReplaceAll(kv[1], `\`, `\\`), `'`, `\'`)
		fmt.Fprintf(&b, "%s='%s' ", kv[0], v)
	}
	merged := strings.TrimSpace(b.String())
	if host := peerForeignHost(merged); host != "" {
		return nil, fmt.Errorf("peer: refusing to connect to %s: the peer suites send traffic to 127.0.0.1 only", host)
	}
	return sql.Open("poolsafe", merged)
}

// peerKeep returns the pairs of kvs whose keys are among keys.
func peerKeep(kvs [][2]string, keys ...string) [][2]string {
	var out [][2]string
	for _, kv := range kvs {
		for _, k := range keys {
			if kv[0] == k {
				out = append(out, kv)
			}
		}
	}
	return out
}

func peerDelete(kvs [][2]string, k string) [][2]string {
	var out [][2]string
	for _, kv := range kvs {
		if kv[0] != k {
			out = append(out, kv)
		}
	}
	return out
}

// peerLocal reports whether host is a loopback IP address.
func peerLocal(host string) bool {
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

func peerSet(kvs [][2]string, k, v string) [][2]string {
	for i := range kvs {
		if kvs[i][0] == k {
			kvs[i][1] = v
			return kvs
		}
	}
	return append(kvs, [2]string{k, v})
}

// peerParse reads a postgres:// URL or a libpq key=value string.
func peerParse(s string) ([][2]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		var kvs [][2]string
		if h := u.Hostname(); h != "" {
			kvs = append(kvs, [2]string{"host", h})
		}
		if p := u.Port(); p != "" {
			kvs = append(kvs, [2]string{"port", p})
		}
		if u.User != nil {
			kvs = append(kvs, [2]string{"user", u.User.Username()})
			if p, ok := u.User.Password(); ok {
				kvs = append(kvs, [2]string{"password", p})
			}
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			kvs = append(kvs, [2]string{"dbname", db})
		}
		for k, vs := range u.Query() {
			for _, v := range vs {
				kvs = peerSet(kvs, k, v)
			}
		}
		return kvs, nil
	}
	var kvs [][2]string
	for i := 0; ; {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			return kvs, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("missing = in %q", s[i:])
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for ; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			i++
		} else {
			for ; i < len(s) && s[i] != ' '; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
			}
		}
		kvs = peerSet(kvs, key, v.String())
	}
}
