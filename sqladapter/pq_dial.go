package sqladapter

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol codes seen in the first messages of a connection.
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	protocolV3        = 196608
)

// wireSlotKey carries a *wireSlot in the context of Connect, so that the
// dialer can hand the socket it made to the connection being built.
type wireSlotKey struct{}

type wireSlot struct{ conn *wireConn }

// pqDialer dials lib/pq's connections. Every socket counts the bytes
// written on it, so that a connection failure can be told apart: before
// anything was sent the statement did not run (database/sql may retry it),
// after that it may have run (see conn.atMostOnce).
//
// With intercept set (a pooler is in front): when the context of a running query ends, lib/pq opens a second
// connection and sends a CancelRequest. PgBouncer 1.18 (Debian 12) can
// exit on such a request ("bad client state: 0", pgbouncer issue #801),
// taking every client down with it. So the dialer recognises lib/pq's
// cancel connection by its first message, sends nothing to the pooler,
// and instead ends the query's own connection at once — what pgx does
// on a cancelled context by default. The pooler then drops that server
// connection; the statement stops at its statement_timeout at the latest.
// A cancel for a connection it does not know (TLS hides the key) goes to
// the pooler as usual.
type pqDialer struct {
	d         net.Dialer
	intercept bool

	mu    sync.Mutex
	conns map[[8]byte]*wireConn // BackendKeyData (pid, secret) → connection
}

func newPQDialer(intercept bool) *pqDialer {
	return &pqDialer{d: net.Dialer{KeepAlive: 5 * time.Minute}, intercept: intercept, conns: map[[8]byte]*wireConn{}}
}

func (d *pqDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *pqDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *pqDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	wc := &wireConn{Conn: c, d: d}
	if slot, ok := ctx.Value(wireSlotKey{}).(*wireSlot); ok {
		slot.conn = wc
	}
	return wc, nil
}

func (d *pqDialer) register(key [8]byte, c *wireConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns[key] = c
}

func (d *pqDialer) forget(key [8]byte, c *wireConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns[key] == c {
		delete(d.conns, key)
	}
}

func (d *pqDialer) lookup(key [8]byte) *wireConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[key]
}

// wireConn counts the bytes written on it, learns its BackendKeyData from
// the server's first messages and intercepts a CancelRequest written to it.
type wireConn struct {
	net.Conn
	d       *pqDialer
	written atomic.Int64

	mu          sync.Mutex
	startupSent bool   // a StartupMessage went out: no cancel on this connection
	sslAsked    bool   // an SSLRequest went out: the next server byte is its answer
	parsing     bool   // still reading the startup response
	in          []byte // unparsed startup-response bytes
	key         [8]byte
	keyed       bool
	intercepted bool // this connection carried a cancel that was handled here
}

func (c *wireConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.d.intercept && !c.startupSent && len(p) >= 8 {
		switch binary.BigEndian.Uint32(p[4:8]) {
		case sslRequestCode:
			c.sslAsked = true
		case protocolV3:
			c.startupSent, c.parsing = true, true
		case cancelRequestCode:
			if len(p) == 16 {
				var key [8]byte
				copy(key[:], p[8:16])
				if target := c.d.lookup(key); target != nil {
					c.intercepted = true
					c.mu.Unlock()
					_ = target.Conn.SetDeadline(time.Now()) // the query's read fails now
					_ = c.Conn.Close()
					return len(p), nil
				}
			}
		}
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *wireConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	intercepted := c.intercepted
	c.mu.Unlock()
	if intercepted {
		return 0, io.EOF // as if the pooler had closed the cancel connection
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.observe(p[:n])
	}
	return n, err
}

// observe scans the server's startup response for BackendKeyData.
func (c *wireConn) observe(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sslAsked && !c.startupSent {
		if b[0] == 'S' {
			c.sslAsked = false
			c.startupSent = true // TLS from here on: nothing to learn
			return
		}
		c.sslAsked = false
		b = b[1:] // 'N': plain text goes on
	}
	if !c.parsing {
		return
	}
	c.in = append(c.in, b...)
	for len(c.in) >= 5 {
		typ, n := c.in[0], int(binary.BigEndian.Uint32(c.in[1:5]))
		if n < 4 || len(c.in) > 1<<16 {
			c.parsing, c.in = false, nil
			return
		}
		if len(c.in) < 1+n {
			return
		}
		switch {
		case typ == 'K' && n >= 12:
			copy(c.key[:], c.in[5:13])
			c.keyed = true
			c.d.register(c.key, c)
		case typ == 'Z' || typ == 'E':
			c.parsing, c.in = false, nil
			return
		}
		c.in = c.in[1+n:]
	}
}

func (c *wireConn) Close() error {
	c.mu.Lock()
	keyed, key := c.keyed, c.key
	c.mu.Unlock()
	if keyed {
		c.d.forget(key, c)
	}
	return c.Conn.Close()
}
