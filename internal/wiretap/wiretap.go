// Package wiretap is a test-only TCP proxy between a PostgreSQL client and
// its server (or pooler) that decodes what the client sends, with pgx's
// protocol codec, and counts it: named and unnamed Parse, Sync, simple
// Query. Tests use it to prove on the real wire that nothing names a
// statement in transaction mode and that each autocommit statement is one
// round trip.
package wiretap

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Counts is what the clients sent since the last Reset.
type Counts struct {
	NamedParse   int // Parse with a statement name
	UnnamedParse int
	Bind         int
	Execute      int
	Sync         int
	Query        int // simple-protocol Query messages, pings excluded
	Ping         int // pgx's "-- ping" simple queries (database/sql session checks)
	// NamedStatements holds up to ten names seen in named Parse messages.
	NamedStatements []string
}

// RoundTrips is Sync plus Query: each ends one round trip.
func (c Counts) RoundTrips() int { return c.Sync + c.Query }

// Tap listens on 127.0.0.1 and forwards every connection to upstream.
type Tap struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	counts Counts
	conns  []net.Conn
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and forwards to upstream
// ("127.0.0.1:16432"). Close stops it.
func Start(upstream string) (*Tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Tap{ln: ln, upstream: upstream}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is the address clients should connect to.
func (t *Tap) Addr() string { return t.ln.Addr().String() }

// Rewrite returns rawURL (a postgres:// URL to the upstream) pointed at the
// tap instead.
func (t *Tap) Rewrite(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("wiretap: cannot parse URL")
	}
	u.Host = t.Addr()
	return u.String(), nil
}

// Counts returns what was counted since the last Reset.
func (t *Tap) Counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts
	c.NamedStatements = append([]string(nil), c.NamedStatements...)
	return c
}

// Reset zeroes the counters.
func (t *Tap) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts = Counts{}
}

// Close stops listening and closes every proxied connection.
func (t *Tap) Close() error {
	err := t.ln.Close()
	t.mu.Lock()
	for _, c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}

func (t *Tap) accept() {
	defer t.wg.Done()
	for {
		client, err := t.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", t.upstream)
		if err != nil {
			client.Close()
			continue
		}
		t.mu.Lock()
		t.conns = append(t.conns, client, server)
		t.mu.Unlock()
		t.wg.Add(2)
		go func() {
			defer t.wg.Done()
			_, _ = io.Copy(client, server)
			client.Close()
		}()
		go func() {
			defer t.wg.Done()
			t.decode(client, server)
			server.Close()
		}()
	}
}

// decode forwards every byte from client to server and decodes the same
// bytes as frontend messages.
func (t *Tap) decode(client, server net.Conn) {
	src := &readErr{r: io.TeeReader(client, server)}
	be := pgproto3.NewBackend(src, io.Discard)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.StartupMessage); ok {
			break
		}
		// SSLRequest / GSSEncRequest: the server answers, the client goes on.
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			if src.err != nil {
				return // the connection ended
			}
			// A message pgproto3 cannot decode without following the
			// authentication exchange (SASL 'p' messages): its body was
			// read, so decoding stays in step.
			continue
		}
		t.count(msg)
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
	}
}

func (t *Tap) count(msg pgproto3.FrontendMessage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.counts
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if m.Name != "" {
			c.NamedParse++
			if len(c.NamedStatements) < 10 {
				c.NamedStatements = append(c.NamedStatements, m.Name)
			}
		} else {
			c.UnnamedParse++
		}
	case *pgproto3.Bind:
		c.Bind++
	case *pgproto3.Execute:
		c.Execute++
	case *pgproto3.Sync:
		c.Sync++
	case *pgproto3.Query:
		if strings.TrimSpace(m.String) == "-- ping" {
			c.Ping++
		} else {
			c.Query++
		}
	}
}

// readErr remembers the error that ended reading, to tell it from a
// message that did not decode.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil {
		r.err = err
	}
	return n, err
}
