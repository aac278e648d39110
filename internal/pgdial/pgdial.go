// Package pgdial dials PostgreSQL connections for both drivers: every
// socket counts the bytes written on it (so that a lost connection can be
// told "nothing was sent" from "it may have run"), and, behind a pooler, a
// CancelRequest is never sent to the pooler: the statement's own
// connection is closed instead.
package pgdial

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

// slotKey carries a *Slot in the context of a connect, so that the dialer
// can hand the socket it made to the connection being built.
type slotKey struct{}

// Slot receives the socket dialed for one connect.
type Slot struct{ Conn *Conn }

// WithSlot returns ctx carrying a new Slot for [Dialer.DialContext] to fill.
func WithSlot(ctx context.Context) (context.Context, *Slot) {
	s := new(Slot)
	return context.WithValue(ctx, slotKey{}, s), s
}

// Dialer dials the drivers' connections. Every socket counts the bytes
// written on it, so that a connection failure can be told apart: before
// anything was sent the statement did not run (database/sql may retry it),
// after that it may have run (see conn.atMostOnce).
//
// With intercept set (a pooler is in front), no CancelRequest reaches the
// pooler. Both drivers send one on a second connection — lib/pq when a
// context ends mid-statement, pgx's pgconn also whenever a connection
// breaks mid-query (asyncClose) — and PgBouncer 1.18 (Debian 12) can exit
// on such a request ("bad client state: 0", pgbouncer issue #801), taking
// every client down with it. The dialer recognises the cancel connection
// by its first message, sends nothing, and ends the query's own connection
// at once if it knows it. The pooler then drops that server connection;
// the statement stops at its statement_timeout at the latest. (Under TLS
// the message is encrypted and cannot be seen.)
type Dialer struct {
	d         net.Dialer
	intercept bool

	mu    sync.Mutex
	conns map[[8]byte]*Conn // BackendKeyData (pid, secret) → connection
}

// New returns a Dialer; with intercept, cancel requests are handled here
// rather than sent (see Dialer).
func New(intercept bool) *Dialer {
	return &Dialer{d: net.Dialer{KeepAlive: 5 * time.Minute}, intercept: intercept, conns: map[[8]byte]*Conn{}}
}

func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	wc := &Conn{Conn: c, d: d}
	if dl, ok := ctx.Deadline(); ok {
		// lib/pq bounds its startup by connect_timeout alone; the call's
		// deadline bounds it too (see SetDeadline).
		wc.startDeadline = dl
		_ = c.SetDeadline(dl)
	}
	if slot, ok := ctx.Value(slotKey{}).(*Slot); ok {
		slot.Conn = wc
	}
	return wc, nil
}

func (d *Dialer) register(key [8]byte, c *Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns[key] = c
}

func (d *Dialer) forget(key [8]byte, c *Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns[key] == c {
		delete(d.conns, key)
	}
}

func (d *Dialer) lookup(key [8]byte) *Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[key]
}

// Conn counts the bytes written on it, learns its BackendKeyData from
// the server's first messages and intercepts a CancelRequest written to it.
type Conn struct {
	net.Conn
	d       *Dialer
	written atomic.Int64

	mu          sync.Mutex
	startupSent bool   // a StartupMessage went out: no cancel on this connection
	sslAsked    bool   // an SSLRequest went out: the next server byte is its answer
	parsing     bool   // still reading the startup response
	in          []byte // unparsed startup-response bytes
	key         [8]byte
	keyed       bool
	intercepted bool // this connection carried a cancel that was handled here

	startDeadline time.Time // the dialing context's deadline; zero if none
	asked         time.Time // the deadline the driver last set
	started       bool      // the startup exchange is over (or cannot be followed)
}

// SetDeadline sets the driver's deadline, except that until the startup
// exchange is over it is never later than the dialing context's deadline:
// a connection being opened for a call does not outlive the call.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.asked = t
	if !c.started && !c.startDeadline.IsZero() && (t.IsZero() || t.After(c.startDeadline)) {
		t = c.startDeadline
	}
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// finishStartup ends the startup bound: the driver's own deadline applies
// from here on. c.mu is held.
func (c *Conn) finishStartup() {
	if c.started {
		return
	}
	c.started = true
	if !c.startDeadline.IsZero() {
		_ = c.Conn.SetDeadline(c.asked)
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.startupSent && !c.started && len(p) >= 8 {
		switch binary.BigEndian.Uint32(p[4:8]) {
		case sslRequestCode:
			c.sslAsked = true
		case protocolV3:
			c.startupSent, c.parsing = true, true
		case cancelRequestCode:
			if c.d.intercept && len(p) == 16 {
				var key [8]byte
				copy(key[:], p[8:16])
				if target := c.d.lookup(key); target != nil {
					_ = target.Conn.SetDeadline(time.Now()) // the query's read fails now
				}
				// Known or not (a connection already gone, or still
				// starting), the request is never sent to the pooler.
				c.intercepted = true
				c.mu.Unlock()
				_ = c.Conn.Close()
				return len(p), nil
			}
		default:
			c.finishStartup() // nothing this dialer can follow
		}
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *Conn) Read(p []byte) (int, error) {
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
func (c *Conn) observe(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sslAsked && !c.startupSent {
		if b[0] == 'S' {
			c.sslAsked = false
			c.startupSent = true // TLS from here on: nothing to learn
			c.finishStartup()
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
			c.finishStartup()
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
			c.finishStartup()
			return
		}
		c.in = c.in[1+n:]
	}
}

func (c *Conn) Close() error {
	c.mu.Lock()
	keyed, key := c.keyed, c.key
	c.mu.Unlock()
	if keyed {
		c.d.forget(key, c)
	}
	return c.Conn.Close()
}

// Written returns how many bytes have been written on the connection.
func (c *Conn) Written() int64 { return c.written.Load() }
