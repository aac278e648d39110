// Package pgdial dials PostgreSQL connections for both drivers: every
// socket counts the bytes written on it (so that a lost connection can be
// told "nothing was sent" from "it may have run"), and, behind a pooler, a
// CancelRequest is never sent to the pooler: the statement's own
// connection is closed instead.
package pgdial

import (
	"bytes"
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
	d           net.Dialer
	intercept   bool
	trackErrors bool

	mu    sync.Mutex
	conns map[[8]byte]*Conn // BackendKeyData (pid, secret) → connection
}

// New returns a Dialer; with intercept, cancel requests are handled here
// rather than sent (see Dialer).
func New(intercept bool) *Dialer {
	return &Dialer{d: net.Dialer{KeepAlive: 5 * time.Minute}, intercept: intercept, conns: map[[8]byte]*Conn{}}
}

// TrackErrors makes every connection keep the last FATAL or PANIC error
// the server sent on it (see [Conn.TakeFatal]), for a driver that drops it
// (lib/pq reports driver.ErrBadConn instead). It returns d.
func (d *Dialer) TrackErrors() *Dialer {
	d.trackErrors = true
	return d
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
	startupSent bool // a StartupMessage went out: no cancel on this connection
	sslAsked    bool // an SSLRequest went out: the next server byte is its answer
	parsing     bool // following the server's messages (see observe)
	key         [8]byte
	keyed       bool
	intercepted atomic.Bool // this connection carried a cancel that was handled here (read without mu)

	startDeadline time.Time // the dialing context's deadline; zero if none
	asked         time.Time // the deadline the driver last set
	started       bool      // the startup exchange is over (or cannot be followed)
	interrupted   bool      // Interrupt was called: every read and write fails

	// observe's position in the server's stream.
	hdr     [5]byte // type and length of the message being read
	nhdr    int     // bytes of hdr read so far
	inBody  bool    // hdr is complete; remain body bytes follow
	typ     byte
	remain  int64
	keeping bool   // the body is kept in keep
	keep    []byte // the body so far
	fatal   ServerError
}

// Interrupt ends the read or write in progress on the connection, and
// every later one: the socket's deadline is set to now and no later
// SetDeadline moves it. The connection is unusable afterwards. This is how
// a context that ends mid-call breaks off a driver call that does not
// watch the context itself (lib/pq's BEGIN), and how an intercepted
// CancelRequest ends its query.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	_ = c.Conn.SetDeadline(time.Now())
}

// Interrupted reports whether Interrupt was called.
func (c *Conn) Interrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// SetDeadline sets the driver's deadline, except that until the startup
// exchange is over it is never later than the dialing context's deadline:
// a connection being opened for a call does not outlive the call.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return nil // stays in the past
	}
	c.asked = t
	if !c.started && !c.startDeadline.IsZero() && (t.IsZero() || t.After(c.startDeadline)) {
		t = c.startDeadline
	}
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline is net.Conn's, except after Interrupt.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.unlessInterrupted(func() error { return c.Conn.SetReadDeadline(t) })
}

// SetWriteDeadline is net.Conn's, except after Interrupt.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.unlessInterrupted(func() error { return c.Conn.SetWriteDeadline(t) })
}

// unlessInterrupted runs set under c.mu unless Interrupt was called.
func (c *Conn) unlessInterrupted(set func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return nil
	}
	return set()
}

// finishStartup ends the startup bound: the driver's own deadline applies
// from here on. c.mu is held.
func (c *Conn) finishStartup() {
	if c.started {
		return
	}
	c.started = true
	if !c.startDeadline.IsZero() && !c.interrupted {
		_ = c.Conn.SetDeadline(c.asked)
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.startupSent && !c.started && len(p) >= 8 {
		switch code := binary.BigEndian.Uint32(p[4:8]); {
		case code == sslRequestCode:
			c.sslAsked = true
		case code>>16 == protocolV3>>16:
			// Protocol 3.0, or 3.2 (max_protocol_version): the same
			// startup response.
			c.startupSent, c.parsing = true, true
		case code == cancelRequestCode:
			// 16 bytes, or more with protocol 3.2's longer keys (the
			// first four bytes of the key identify the connection).
			if c.d.intercept && len(p) >= 16 {
				var key [8]byte
				copy(key[:], p[8:16])
				if target := c.d.lookup(key); target != nil {
					target.Interrupt() // the query's read fails now
				}
				// Known or not (a connection already gone, or still
				// starting), the request is never sent to the pooler.
				c.intercepted.Store(true)
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
	if c.intercepted.Load() {
		return 0, io.EOF // as if the pooler had closed the cancel connection
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.observe(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// observe follows the server's messages: BackendKeyData and the end of the
// startup exchange, and — when the dialer tracks errors — every FATAL or
// PANIC ErrorResponse (see TakeFatal). Message bodies are kept only for
// the few types it reads; everything else is skipped by its length.
// c.mu is held.
func (c *Conn) observe(b []byte) {
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
	for c.parsing && len(b) > 0 {
		if c.started && !c.inBody && c.nhdr == 0 {
			if b = skipMessages(b); len(b) == 0 {
				return
			}
		}
		if !c.inBody {
			n := copy(c.hdr[c.nhdr:], b)
			c.nhdr += n
			b = b[n:]
			if c.nhdr < len(c.hdr) {
				return
			}
			c.nhdr = 0
			c.typ = c.hdr[0]
			size := int64(binary.BigEndian.Uint32(c.hdr[1:])) - 4
			if size < 0 {
				c.stopParsing() // not the protocol this dialer follows
				return
			}
			c.remain = size
			c.keep = c.keep[:0]
			c.keeping = size <= maxKept && (c.typ == 'E' || !c.started && (c.typ == 'K' || c.typ == 'Z'))
			c.inBody = true
		}
		n := int(min(int64(len(b)), c.remain))
		if c.keeping {
			c.keep = append(c.keep, b[:n]...)
		}
		c.remain -= int64(n)
		b = b[n:]
		if c.remain == 0 {
			c.inBody = false
			c.message()
		}
	}
}

// skipMessages drops the whole messages at the start of b whose bodies
// observe would skip by their length once the startup exchange is over:
// every message but an ErrorResponse (message does nothing with the
// others then). It stops at the first ErrorResponse or incomplete message,
// which observe follows byte by byte. This is the common case — the rows
// of a result, each its own DataRow — in a loop of its own.
func skipMessages(b []byte) []byte {
	i := 0
	for len(b)-i >= 5 {
		h := b[i : i+5 : i+5]
		if h[0] == 'E' {
			break
		}
		size := binary.BigEndian.Uint32(h[1:]) // including itself
		if size < 4 || uint64(size-4) > uint64(len(b)-i-5) {
			break
		}
		i += 1 + int(size)
	}
	return b[i:]
}

// maxKept bounds a message body observe keeps (libpq's MAX_ERRLEN is
// 30000).
const maxKept = 64 << 10

// message handles one complete server message. c.mu is held.
func (c *Conn) message() {
	switch c.typ {
	case 'K':
		if !c.started && c.keeping && len(c.keep) >= 8 {
			copy(c.key[:], c.keep[:8])
			c.keyed = true
			c.d.register(c.key, c)
		}
	case 'Z':
		if !c.started {
			c.finishStartup()
			if !c.d.trackErrors {
				c.stopParsing()
			}
		}
	case 'E':
		if c.keeping {
			if e := parseServerError(c.keep); e.Fatal() {
				c.fatal = e
			}
		}
		if !c.started {
			c.finishStartup()
			if !c.d.trackErrors {
				c.stopParsing()
			}
		}
	}
}

func (c *Conn) stopParsing() {
	c.parsing, c.inBody, c.keep = false, false, nil
	c.finishStartup()
}

// ServerError is an ErrorResponse the server sent: its fields by their
// protocol codes — 'S' severity (localized), 'V' severity, 'C' SQLSTATE,
// 'M' message, 'D' detail, 'H' hint, 'n' constraint, and so on.
type ServerError map[byte]string

// Severity is the unlocalized severity when the server sent one, else the
// localized one (PgBouncer sends only that).
func (e ServerError) Severity() string {
	if v := e['V']; v != "" {
		return v
	}
	return e['S']
}

// Fatal reports a FATAL or PANIC error: the server closes the connection
// after it.
func (e ServerError) Fatal() bool {
	s := e.Severity()
	return s == "FATAL" || s == "PANIC"
}

func parseServerError(b []byte) ServerError {
	e := ServerError{}
	for len(b) > 0 && b[0] != 0 {
		code := b[0]
		i := bytes.IndexByte(b[1:], 0)
		if i < 0 {
			break
		}
		e[code] = string(b[1 : 1+i])
		b = b[2+i:]
	}
	return e
}

// TakeFatal returns the last FATAL or PANIC error the server sent on this
// connection and forgets it; nil when there is none, or when the dialer
// does not track errors (see [Dialer.TrackErrors]). The server closes the
// connection after such an error, so it explains why the connection broke.
func (c *Conn) TakeFatal() ServerError {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.fatal
	c.fatal = nil
	return e
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
