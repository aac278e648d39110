// Package wiretap is a test-only TCP proxy between a PostgreSQL client and
// its server (or pooler) that decodes what the client sends, with pgx's
// protocol codec, and counts it: named and unnamed Parse, Sync, simple
// Query. Tests use it to prove on the real wire that nothing names a
// statement in transaction mode and that each autocommit statement is one
// round trip.
package wiretap

import (
	"bufio"
	"bytes"
	"encoding/binary"
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

// decode reads what the client sends one message at a time, decodes and
// counts it with pgproto3, and only then forwards its bytes: by the time the
// client can see an answer, the message that asked for it is counted.
func (t *Tap) decode(client, server net.Conn) {
	r := bufio.NewReader(client)
	// Startup phase: length-prefixed messages without a type byte
	// (SSLRequest and GSSEncRequest are answered by the server, then the
	// client goes on with its StartupMessage).
	for {
		frame, err := ReadFrame(r, false)
		if err != nil {
			return
		}
		msg, _ := pgproto3.NewBackend(bytes.NewReader(frame), io.Discard).ReceiveStartupMessage()
		if _, err := server.Write(frame); err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.StartupMessage); ok {
			break
		}
		if _, ok := msg.(*pgproto3.CancelRequest); ok {
			// The server closes a cancel connection when it is done;
			// closing it first makes PgBouncer 1.18 exit (pgbouncer #801).
			_, _ = io.Copy(io.Discard, r)
			return
		}
	}
	for {
		frame, err := ReadFrame(r, true)
		if err != nil {
			return
		}
		// Authentication messages ('p') cannot be decoded without following
		// the exchange; they are forwarded uncounted.
		if msg, err := pgproto3.NewBackend(bytes.NewReader(frame), io.Discard).Receive(); err == nil {
			t.count(msg)
		}
		if _, err := server.Write(frame); err != nil {
			return
		}
		if frame[0] == 'X' { // Terminate
			return
		}
	}
}

// ReadFrame reads one protocol message as it is on the wire: a type byte
// (when typed), an int32 length that counts itself, and the body. What the
// message says is decoded by pgproto3; this only finds where it ends.
func ReadFrame(r *bufio.Reader, typed bool) ([]byte, error) {
	head := 4
	if typed {
		head = 5
	}
	hdr, err := r.Peek(head)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[head-4:]))
	if n < 4 || n > 1<<30 {
		return nil, errors.New("wiretap: bad message length")
	}
	frame := make([]byte, head-4+n)
	_, err = io.ReadFull(r, frame)
	return frame, err
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
