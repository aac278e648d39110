// Package faultproxy is a test-only TCP proxy between PostgreSQL clients and
// their server (or pooler) that breaks connections on purpose, the way
// networks, poolers and servers break them in production.
//
// It listens on 127.0.0.1 and forwards every byte unchanged, but reads both
// directions one protocol message at a time, decoding each with pgx's
// protocol codec (pgproto3's Backend for what clients send, its Frontend for
// what the server answers), so that faults land on message boundaries and
// can target one statement:
//
//   - [Proxy.CutAll] closes every live connection now;
//   - [Proxy.CutAfter] and [Proxy.CutEvery] close the connection that sends
//     the n-th client message, right after forwarding it;
//   - [Proxy.CutMidCommit] forwards a COMMIT to the server but closes the
//     client's side at once: the server commits, the client never hears;
//   - [Proxy.SwallowAnswer] forwards a request, lets the server run it to
//     the end, discards the whole answer and then closes the connection;
//   - [Proxy.Stall] holds all traffic, both ways and on new connections,
//     for a while;
//   - [Proxy.Drop] loses a fraction of messages, both ways. A message lost
//     on TCP is a lost connection, so a dropped message closes its
//     connection.
//
// A request is what a client sends up to a Sync or a simple Query (or a
// FunctionCall): the unit the server answers with one ReadyForQuery.
// [Request] carries the statement text and the previous answer on the same
// connection, so a fault can target, for example, the COMMIT that follows a
// statement whose answer finished a batch.
//
// [Proxy.Stats] counts what went through, in particular the CancelRequest
// packets (protocol code 80877102) that reached the target: a driver that
// cancels through a transaction pooler can crash it (PgBouncer 1.18,
// pgbouncer issue #801).
package faultproxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"
)

// Match selects the requests a fault applies to. It must not keep r.
type Match func(r *Request) bool

// Stats counts what went through the proxy since it started (or since
// [Proxy.ResetStats]).
type Stats struct {
	// Accepted counts client connections accepted, Live those open now.
	Accepted, Live int
	// DialErrors counts client connections closed because the target
	// refused or did not answer the dial.
	DialErrors int
	// FrontendMessages counts the typed messages clients sent after their
	// startup message; BackendMessages the typed messages the target sent.
	FrontendMessages, BackendMessages int
	// Requests counts requests (up to a Sync, simple Query or
	// FunctionCall) forwarded to the target.
	Requests int
	// CancelRequests counts CancelRequest packets forwarded to the target.
	CancelRequests int
	// Cuts counts connections closed by CutAll, CutAfter and CutEvery.
	Cuts int
	// MidCommitCuts counts COMMITs forwarded whose client was then cut.
	MidCommitCuts int
	// Swallowed counts answers discarded by SwallowAnswer.
	Swallowed int
	// Dropped counts messages dropped by Drop (each closed a connection).
	Dropped int
}

// Proxy forwards connections from a loopback port to a target address and
// injects faults into them. Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	dialer net.Dialer

	mu     sync.Mutex
	conns  map[int]*conn
	nextID int
	stats  Stats
	closed bool

	cutLeft  int // messages until the next cut; 0: disarmed
	cutEvery int // re-arm value after a cut; 0: one-shot
	rules    []*rule

	stallUntil time.Time
	stallWake  chan struct{} // closed and replaced when the stall changes

	dropRate float64
	rng      *rand.Rand

	wg sync.WaitGroup
}

type action int

const (
	forward   action = iota
	midCommit        // forward, cut the client at once, drain the answer
	swallow          // forward, discard the answer, then cut both sides
)

type rule struct {
	action action
	match  Match
	left   int // matches still to fire; negative: unlimited
}

// New listens on a free loopback port (127.0.0.1:0) and forwards every
// connection to target, for example "127.0.0.1:16432". Close stops it.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ln:        ln,
		target:    target,
		dialer:    net.Dialer{Timeout: 5 * time.Second},
		conns:     map[int]*conn{},
		stallWake: make(chan struct{}),
		rng:       rand.New(rand.NewPCG(1, 2)),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients should connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Rewrite returns rawURL (a postgres:// URL to the target) pointed at the
// proxy instead.
func (p *Proxy) Rewrite(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", errors.New("faultproxy: cannot parse URL")
	}
	u.Host = p.Addr()
	return u.String(), nil
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Live = len(p.conns)
	return s
}

// ResetStats zeroes the counters.
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats = Stats{}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.stallUntil = time.Time{}
	close(p.stallWake)
	p.stallWake = make(chan struct{})
	p.mu.Unlock()
	err := p.ln.Close()
	p.cutAll(false)
	p.wg.Wait()
	return err
}

// Clear disarms every fault: pending cuts, CutMidCommit and SwallowAnswer
// rules, a stall and the drop rate. Connections already cut stay cut.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLeft, p.cutEvery = 0, 0
	p.rules = nil
	p.dropRate = 0
	p.setStallLocked(time.Time{})
}

// CutAll closes every live connection now, both sides, and returns how
// many it closed.
func (p *Proxy) CutAll() int { return p.cutAll(true) }

func (p *Proxy) cutAll(count bool) int {
	p.mu.Lock()
	live := make([]*conn, 0, len(p.conns))
	for _, c := range p.conns {
		live = append(live, c)
	}
	if count {
		p.stats.Cuts += len(live)
	}
	p.mu.Unlock()
	for _, c := range live {
		c.cut()
	}
	return len(live)
}

// CutAfter arms a one-shot cut: the connection that sends the n-th client
// message from now on (counted over all connections, typed messages after
// startup) is closed, both sides, right after that message is forwarded.
// The server may or may not have acted on it. n < 1 disarms.
func (p *Proxy) CutAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLeft, p.cutEvery = max(n, 0), 0
}

// CutEvery is CutAfter(n) re-armed after every cut, until Clear.
func (p *Proxy) CutEvery(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLeft, p.cutEvery = max(n, 0), max(n, 0)
}

// CutMidCommit arms a fault for the next n COMMIT requests that match
// (match nil: every COMMIT; n < 0: until Clear): the COMMIT is forwarded
// to the server, the client's connection is closed at once, and the
// server's answer is read and discarded before the server side is closed,
// so the commit happens and the client never learns it.
func (p *Proxy) CutMidCommit(n int, match Match) {
	p.addRule(midCommit, n, func(r *Request) bool {
		return r.IsCommit() && (match == nil || match(r))
	})
}

// SwallowAnswer arms a fault for the next n requests that match (n < 0:
// until Clear): the request is forwarded, the server runs it to the end
// (its ReadyForQuery), and the whole answer is discarded; then the
// connection is closed, both sides. The server did the work; the client
// never hears.
func (p *Proxy) SwallowAnswer(n int, match Match) {
	if match == nil {
		match = func(*Request) bool { return true }
	}
	p.addRule(swallow, n, match)
}

func (p *Proxy) addRule(a action, n int, match Match) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{action: a, match: match, left: n})
}

// Stall holds every message, both ways and on new connections, for d from
// now (d <= 0 ends a stall). Messages read meanwhile are forwarded, in
// order, when it ends, unless their connection was cut.
func (p *Proxy) Stall(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d <= 0 {
		p.setStallLocked(time.Time{})
		return
	}
	p.setStallLocked(time.Now().Add(d))
}

func (p *Proxy) setStallLocked(until time.Time) {
	p.stallUntil = until
	close(p.stallWake)
	p.stallWake = make(chan struct{})
}

// Drop makes each message, both ways, lost with probability rate (0 stops
// dropping). A lost message closes its connection, both sides. The choice
// is pseudo-random from seed, so a run can be repeated.
func (p *Proxy) Drop(rate float64, seed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropRate = rate
	p.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// stalled reports whether a stall is on now.
func (p *Proxy) stalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.stallUntil.IsZero() && time.Now().Before(p.stallUntil)
}

// waitStall blocks while the proxy is stalled; it returns false if done
// was closed first.
func (p *Proxy) waitStall(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		until, wake := p.stallUntil, p.stallWake
		p.mu.Unlock()
		d := time.Until(until)
		if until.IsZero() || d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-wake:
			t.Stop()
		case <-done:
			t.Stop()
			return false
		}
	}
}

// dropNow reports whether the next message is to be dropped, counting it.
func (p *Proxy) dropNow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dropRate <= 0 || p.rng.Float64() >= p.dropRate {
		return false
	}
	p.stats.Dropped++
	return true
}

// frontendMessage counts one client message and reports whether its
// connection is to be cut after forwarding it.
func (p *Proxy) frontendMessage() (cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.FrontendMessages++
	if p.cutLeft == 0 {
		return false
	}
	p.cutLeft--
	if p.cutLeft > 0 {
		return false
	}
	p.cutLeft = p.cutEvery
	p.stats.Cuts++
	return true
}

// decide picks the action for a complete request and counts it.
func (p *Proxy) decide(r *Request) action {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	for i, ru := range p.rules {
		if !ru.match(r) {
			continue
		}
		if ru.left > 0 {
			ru.left--
			if ru.left == 0 {
				p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
			}
		}
		switch ru.action {
		case midCommit:
			p.stats.MidCommitCuts++
		case swallow:
			p.stats.Swallowed++
		}
		return ru.action
	}
	return forward
}

func (p *Proxy) count(f func(s *Stats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.stats)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return
		}
		p.nextID++
		c := newConn(p, p.nextID, client)
		p.conns[c.id] = c
		p.stats.Accepted++
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			c.run()
			p.mu.Lock()
			delete(p.conns, c.id)
			p.mu.Unlock()
		}()
	}
}
