package faultproxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/scrapersky/poolsafe/internal/wiretap"
)

// drainTimeout bounds how long a connection cut mid-COMMIT waits for the
// server's answer before closing the server side anyway.
const drainTimeout = 30 * time.Second

// conn is one proxied client connection and its connection to the target.
type conn struct {
	p      *Proxy
	id     int
	client net.Conn

	cutOnce, clientOnce, serverOnce sync.Once
	done                            chan struct{} // closed when the connection is cut

	mu      sync.Mutex
	server  net.Conn   // nil until dialed
	pending []*pending // requests forwarded, oldest first, awaiting ReadyForQuery
	cur     Request    // the request being assembled
	seq     int
	last    *Answer // answer to the latest request answered
}

// pending is a forwarded request, what to do with its answer, and what the
// answer said so far.
type pending struct {
	req    *Request
	action action
	answer Answer
}

func newConn(p *Proxy, id int, client net.Conn) *conn {
	return &conn{p: p, id: id, client: client, done: make(chan struct{})}
}

// cut closes both sides now.
func (c *conn) cut() {
	c.cutOnce.Do(func() { close(c.done) })
	c.closeClient()
	c.closeServer()
}

func (c *conn) closeClient() { c.clientOnce.Do(func() { c.client.Close() }) }

func (c *conn) closeServer() {
	c.mu.Lock()
	s := c.server
	c.mu.Unlock()
	if s != nil {
		c.serverOnce.Do(func() { s.Close() })
	}
}

func (c *conn) isCut() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// run dials the target and forwards until both directions are done.
func (c *conn) run() {
	server, err := c.p.dialer.Dial("tcp", c.p.target)
	if err != nil {
		c.p.count(func(s *Stats) { s.DialErrors++ })
		c.cut()
		return
	}
	c.mu.Lock()
	c.server = server
	c.mu.Unlock()
	if c.isCut() { // cut while dialing
		c.closeServer()
		return
	}
	var wg sync.WaitGroup
	c.fromClient(&wg)
	wg.Wait()
}

// fromClient forwards what the client sends: first the untyped startup
// packets, then typed messages, one at a time. It starts fromServer once
// the startup message (or a cancel request) is through.
func (c *conn) fromClient(wg *sync.WaitGroup) {
	r := bufio.NewReader(c.client)
	for {
		frame, err := wiretap.ReadFrame(r, false)
		if err != nil {
			c.cut()
			return
		}
		msg, _ := pgproto3.NewBackend(bytes.NewReader(frame), io.Discard).ReceiveStartupMessage()
		if !c.p.waitStall(c.done) {
			return
		}
		if _, isCancel := msg.(*pgproto3.CancelRequest); !isCancel && c.p.dropNow() {
			c.cut()
			return
		}
		if _, err := c.server.Write(frame); err != nil {
			c.cut()
			return
		}
		switch msg.(type) {
		case *pgproto3.CancelRequest:
			c.p.count(func(s *Stats) { s.CancelRequests++ })
			// The server closes a cancel connection when it is done with
			// it; closing it first makes PgBouncer 1.18 exit (pgbouncer
			// issue #801). So wait for the server, then close the client.
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c.client, c.server)
				c.closeClient()
			}()
			_, _ = io.Copy(io.Discard, r)
			c.closeServer()
			return
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			// The server answers with one byte; 'S' or 'G' starts an
			// encrypted stream the proxy can only pass through.
			var b [1]byte
			if _, err := io.ReadFull(c.server, b[:]); err != nil {
				c.cut()
				return
			}
			if _, err := c.client.Write(b[:]); err != nil {
				c.cut()
				return
			}
			if b[0] != 'N' {
				c.passThrough(wg, r)
				return
			}
		case *pgproto3.StartupMessage:
			c.mu.Lock()
			c.pending = append(c.pending, &pending{req: &Request{Conn: c.id, startup: true}})
			c.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.fromServer()
			}()
			c.messages(r)
			return
		default:
			c.cut() // not a protocol 3 startup: nothing to proxy
			return
		}
	}
}

// passThrough copies an encrypted stream both ways until either side ends.
func (c *conn) passThrough(wg *sync.WaitGroup, r *bufio.Reader) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c.client, c.server)
		c.cut()
	}()
	_, _ = io.Copy(c.server, r)
	c.cut()
}

// messages forwards the client's typed messages after startup. Messages
// already read together are written together (one segment, as the client
// sent them); anything written is flushed before a fault acts.
func (c *conn) messages(r *bufio.Reader) {
	w := bufio.NewWriterSize(c.server, 32<<10)
	for {
		if !frameReady(r, true) && w.Flush() != nil {
			c.cut()
			return
		}
		frame, err := wiretap.ReadFrame(r, true)
		if err != nil {
			_ = w.Flush()
			c.clientGone()
			return
		}
		if !c.hold(w) {
			return
		}
		if c.p.dropNow() {
			_ = w.Flush()
			c.cut()
			return
		}
		// Authentication responses ('p') cannot be decoded without
		// following the exchange; they pass undecoded (and end no request).
		msg, _ := pgproto3.NewBackend(bytes.NewReader(frame), io.Discard).Receive()
		// Counted (and judged) before forwarding: by the time the client
		// can see an answer, the message that asked for it is counted.
		act := c.note(msg)
		cutNow := c.p.frontendMessage()
		_, _ = w.Write(frame)
		if cutNow || act == midCommit {
			if w.Flush() != nil {
				c.cut()
				return
			}
		}
		if cutNow {
			c.cut()
			return
		}
		if act == midCommit {
			// The COMMIT is on its way; the client goes now. fromServer
			// drains the answer and then closes the server side.
			_ = c.server.SetReadDeadline(time.Now().Add(drainTimeout))
			c.closeClient()
			return
		}
	}
}

// hold flushes w and waits while the proxy is stalled; false if the
// connection was cut meanwhile.
func (c *conn) hold(w *bufio.Writer) bool {
	if !c.p.stalled() {
		return true
	}
	if w.Flush() != nil {
		c.cut()
		return false
	}
	return c.p.waitStall(c.done)
}

// clientGone handles the client closing its side: the server side closes
// too, unless an answer is being drained (fromServer closes it then).
func (c *conn) clientGone() {
	c.mu.Lock()
	draining := false
	for _, pd := range c.pending {
		draining = draining || pd.action == midCommit
	}
	c.mu.Unlock()
	c.closeClient()
	if !draining {
		c.closeServer()
	}
}

// note adds a client message to the request being assembled; when the
// message ends the request, it decides the request's fate and queues it
// for its answer.
func (c *conn) note(msg pgproto3.FrontendMessage) action {
	c.mu.Lock()
	end := false
	switch m := msg.(type) {
	case *pgproto3.Parse:
		c.cur.SQL = append(c.cur.SQL, m.Query)
	case *pgproto3.Query:
		c.cur.SQL = append(c.cur.SQL, m.String)
		end = true
	case *pgproto3.Sync, *pgproto3.FunctionCall:
		end = true
	}
	if !end {
		c.mu.Unlock()
		return forward
	}
	c.seq++
	req := c.cur
	req.Conn, req.Seq, req.Prev = c.id, c.seq, c.last
	c.cur = Request{}
	c.mu.Unlock()

	// Only this goroutine queues requests, so deciding unlocked keeps the
	// order; Match functions run without the connection's lock.
	act := c.p.decide(&req)
	c.mu.Lock()
	c.pending = append(c.pending, &pending{req: &req, action: act})
	c.mu.Unlock()
	return act
}

// fromServer forwards the server's typed messages, recording each answer
// and applying its request's fate. Like messages, it writes what it read
// together in one go.
func (c *conn) fromServer() {
	r := bufio.NewReader(c.server)
	w := bufio.NewWriterSize(c.client, 32<<10)
	for {
		if !frameReady(r, true) && w.Flush() != nil {
			c.cut()
			return
		}
		frame, err := wiretap.ReadFrame(r, true)
		if err != nil {
			_ = w.Flush()
			c.cut()
			return
		}
		if !c.hold(w) {
			return
		}
		msg, _ := pgproto3.NewFrontend(bytes.NewReader(frame), io.Discard).Receive()
		c.p.count(func(s *Stats) { s.BackendMessages++ })
		act, end := c.answer(msg)
		switch act {
		case forward:
			if c.p.dropNow() {
				_ = w.Flush()
				c.cut()
				return
			}
			_, _ = w.Write(frame)
		case swallow:
			if end {
				_ = w.Flush()
				c.cut()
				return
			}
		case midCommit:
			if end {
				c.closeServer()
				return
			}
		}
	}
}

// answer records a server message in the answer of the oldest pending
// request and returns that request's action, and whether the message (a
// ReadyForQuery) ended its answer. Messages outside any request (a notice,
// a parameter status, a FATAL before closing) are forwarded.
func (c *conn) answer(msg pgproto3.BackendMessage) (action, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return forward, false
	}
	h := c.pending[0]
	a := &h.answer
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		cols := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			cols[i] = string(f.Name)
		}
		a.Results = append(a.Results, Result{Columns: cols})
	case *pgproto3.DataRow:
		if len(a.Results) == 0 {
			a.Results = append(a.Results, Result{})
		}
		res := &a.Results[len(a.Results)-1]
		if len(res.Rows) < maxAnswerRows {
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					row[i] = bytes.Clone(v)
				}
			}
			res.Rows = append(res.Rows, row)
		}
	case *pgproto3.CommandComplete:
		if n := len(a.Results); n > 0 && a.Results[n-1].Tag == "" {
			a.Results[n-1].Tag = string(m.CommandTag)
		} else {
			a.Results = append(a.Results, Result{Tag: string(m.CommandTag)})
		}
	case *pgproto3.ErrorResponse:
		a.Errors = append(a.Errors, m.Code)
	case *pgproto3.ReadyForQuery:
		c.pending = c.pending[1:]
		if !h.req.startup {
			c.last = a
		}
		return h.action, true
	}
	return h.action, false
}
