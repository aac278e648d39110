package faultproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// echoServer is a fake PostgreSQL server: it accepts any startup, answers
// every query with one row holding the query text (column "echo") and a
// column "flag" that is true when the text contains "flag", and records
// what it received and answered.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	events []string // "Q:text", "P:text", "S", "cancel", "answered:text", "eof"
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) record(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *echoServer) has(e string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.events {
		if x == e {
			return true
		}
	}
	return false
}

// waitFor polls until the server recorded e.
func (s *echoServer) waitFor(t *testing.T, e string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !s.has(e) {
		if time.Now().After(deadline) {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("server never recorded %q; events: %q", e, s.events)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *echoServer) serve(c net.Conn) {
	be := pgproto3.NewBackend(c, c)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.CancelRequest:
			s.record("cancel")
			return
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		break
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	var parsed string
	for {
		msg, err := be.Receive()
		if err != nil {
			s.record("eof")
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.record("Q:" + m.String)
			s.sendRow(be, m.String)
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() == nil {
				s.record("answered:" + m.String)
			}
		case *pgproto3.Parse:
			s.record("P:" + m.Query)
			parsed = m.Query
			be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			be.Send(&pgproto3.BindComplete{})
		case *pgproto3.Describe, *pgproto3.Flush:
		case *pgproto3.Execute:
			s.sendRow(be, parsed)
		case *pgproto3.Sync:
			s.record("S")
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() == nil {
				s.record("answered:" + parsed)
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

func (s *echoServer) sendRow(be *pgproto3.Backend, text string) {
	flag := []byte("f")
	if strings.Contains(text, "flag") {
		flag = []byte("t")
	}
	be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("echo"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1},
		{Name: []byte("flag"), DataTypeOID: 16, DataTypeSize: 1, TypeModifier: -1},
	}})
	be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(text), flag}})
	be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
}

// client is a minimal protocol client talking through the proxy.
type client struct {
	t  *testing.T
	c  net.Conn
	fe *pgproto3.Frontend
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, fe: pgproto3.NewFrontend(c, c)}
	cl.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "u", "database": "d"}})
	if err := cl.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.untilReady(); err != nil {
		t.Fatalf("startup: %v", err)
	}
	return cl
}

// untilReady reads the answer up to ReadyForQuery and returns the first
// value of the first row, if any.
func (cl *client) untilReady() (string, error) {
	_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var first string
	for {
		msg, err := cl.fe.Receive()
		if err != nil {
			return first, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if first == "" && len(m.Values) > 0 {
				first = string(m.Values[0])
			}
		case *pgproto3.ReadyForQuery:
			return first, nil
		}
	}
}

// query runs a simple query and returns the echoed text.
func (cl *client) query(q string) (string, error) {
	cl.fe.Send(&pgproto3.Query{String: q})
	if err := cl.fe.Flush(); err != nil {
		return "", err
	}
	return cl.untilReady()
}

// extended runs q with Parse/Bind/Describe/Execute/Sync.
func (cl *client) extended(q string) (string, error) {
	cl.fe.SendParse(&pgproto3.Parse{Query: q})
	cl.fe.SendBind(&pgproto3.Bind{})
	cl.fe.SendDescribe(&pgproto3.Describe{ObjectType: 'P'})
	cl.fe.SendExecute(&pgproto3.Execute{})
	cl.fe.SendSync(&pgproto3.Sync{})
	if err := cl.fe.Flush(); err != nil {
		return "", err
	}
	return cl.untilReady()
}

func (cl *client) mustQuery(q string) {
	cl.t.Helper()
	got, err := cl.query(q)
	if err != nil || got != q {
		cl.t.Fatalf("query %q: got %q, %v", q, got, err)
	}
}

// closed reports whether the connection ends (EOF or reset) within 3s,
// reading and discarding whatever still arrives.
func (cl *client) closed() bool {
	_ = cl.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.Copy(io.Discard, cl.c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func waitLive(t *testing.T, p *Proxy, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for p.Stats().Live != want {
		if time.Now().After(deadline) {
			t.Fatalf("live connections: %d, want %d", p.Stats().Live, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwardsAndCounts(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	cl := dialClient(t, p.Addr())
	cl.mustQuery("select 1")
	if got, err := cl.extended("select $1"); err != nil || got != "select $1" {
		t.Fatalf("extended: %q, %v", got, err)
	}
	st := p.Stats()
	if st.Accepted != 1 || st.Live != 1 || st.Requests != 2 || st.FrontendMessages != 6 {
		t.Fatalf("stats %+v: want 1 accepted, 1 live, 2 requests, 6 frontend messages", st)
	}
	if st.Cuts+st.MidCommitCuts+st.Swallowed+st.Dropped+st.CancelRequests != 0 {
		t.Fatalf("stats %+v: no fault was armed", st)
	}
}

func TestCutAll(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	a, b := dialClient(t, p.Addr()), dialClient(t, p.Addr())
	a.mustQuery("a")
	b.mustQuery("b")
	if n := p.CutAll(); n != 2 {
		t.Fatalf("CutAll cut %d connections, want 2", n)
	}
	if !a.closed() || !b.closed() {
		t.Fatal("a connection survived CutAll")
	}
	waitLive(t, p, 0)
	dialClient(t, p.Addr()).mustQuery("after")
	if st := p.Stats(); st.Cuts != 2 {
		t.Fatalf("cuts %d, want 2", st.Cuts)
	}
}

func TestCutAfterForwardsTheNthMessageThenCuts(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	cl := dialClient(t, p.Addr())
	p.CutAfter(3)
	cl.mustQuery("one")
	cl.mustQuery("two")
	_, _ = cl.query("three")
	if !cl.closed() {
		t.Fatal("connection not cut after the third message")
	}
	s.waitFor(t, "Q:three") // forwarded before the cut
	// One-shot: a new connection is not cut.
	cl2 := dialClient(t, p.Addr())
	for i := range 5 {
		cl2.mustQuery(fmt.Sprint("again ", i))
	}
	if st := p.Stats(); st.Cuts != 1 {
		t.Fatalf("cuts %d, want 1", st.Cuts)
	}
}

func TestCutEvery(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	p.CutEvery(2)
	for i := range 3 {
		cl := dialClient(t, p.Addr())
		cl.mustQuery(fmt.Sprint("first ", i))
		_, _ = cl.query("second")
		if !cl.closed() {
			t.Fatalf("connection %d not cut after its second message", i)
		}
	}
	p.Clear()
	cl := dialClient(t, p.Addr())
	for i := range 4 {
		cl.mustQuery(fmt.Sprint("cleared ", i))
	}
	if st := p.Stats(); st.Cuts != 3 {
		t.Fatalf("cuts %d, want 3", st.Cuts)
	}
}

func TestCutMidCommit(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	p.CutMidCommit(1, nil)
	cl := dialClient(t, p.Addr())
	cl.mustQuery("BEGIN")
	cl.mustQuery("insert into t values (1)")
	got, err := cl.query("COMMIT")
	if err == nil || got != "" {
		t.Fatalf("COMMIT answered through a mid-COMMIT cut: %q, %v", got, err)
	}
	if !cl.closed() {
		t.Fatal("client side not closed")
	}
	// The server got the COMMIT and answered it; then its side was closed.
	s.waitFor(t, "answered:COMMIT")
	s.waitFor(t, "eof")
	waitLive(t, p, 0)
	// One-shot.
	cl2 := dialClient(t, p.Addr())
	cl2.mustQuery("COMMIT")
	if st := p.Stats(); st.MidCommitCuts != 1 {
		t.Fatalf("mid-commit cuts %d, want 1", st.MidCommitCuts)
	}
}

func TestSwallowAnswer(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	p.SwallowAnswer(1, func(r *Request) bool { return r.Contains("INSERT") })
	cl := dialClient(t, p.Addr())
	cl.mustQuery("select 1")
	got, err := cl.extended("insert into t values (1)")
	if err == nil || got != "" {
		t.Fatalf("swallowed answer reached the client: %q, %v", got, err)
	}
	if !cl.closed() {
		t.Fatal("connection not closed after the swallowed answer")
	}
	s.waitFor(t, "answered:insert into t values (1)")
	cl2 := dialClient(t, p.Addr())
	if got, err := cl2.extended("insert into t values (2)"); err != nil || got != "insert into t values (2)" {
		t.Fatalf("second insert (rule spent): %q, %v", got, err)
	}
	if st := p.Stats(); st.Swallowed != 1 {
		t.Fatalf("swallowed %d, want 1", st.Swallowed)
	}
}

func TestMatchSeesThePreviousAnswer(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	p.CutMidCommit(-1, func(r *Request) bool { return r.Prev.Bool("flag") })
	plain := dialClient(t, p.Addr())
	plain.mustQuery("BEGIN")
	plain.mustQuery("select plain")
	plain.mustQuery("COMMIT")
	flagged := dialClient(t, p.Addr())
	flagged.mustQuery("BEGIN")
	flagged.mustQuery("select flag")
	if _, err := flagged.query("COMMIT"); err == nil {
		t.Fatal("COMMIT after a flagged answer was answered")
	}
	s.waitFor(t, "answered:COMMIT")
	if st := p.Stats(); st.MidCommitCuts != 1 {
		t.Fatalf("mid-commit cuts %d, want 1", st.MidCommitCuts)
	}
}

func TestStall(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	cl := dialClient(t, p.Addr())
	const d = 300 * time.Millisecond
	p.Stall(d)
	start := time.Now()
	cl.mustQuery("stalled")
	if el := time.Since(start); el < d-20*time.Millisecond {
		t.Fatalf("query took %v through a %v stall", el, d)
	}
	// New connections stall too; Stall(0) ends a stall early.
	p.Stall(time.Minute)
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		c := dialClient(t, p.Addr())
		c.mustQuery("late")
		done <- time.Since(start)
	}()
	select {
	case <-done:
		t.Fatal("a new connection got through a stall")
	case <-time.After(200 * time.Millisecond):
	}
	p.Stall(0)
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Stall(0) did not end the stall")
	}
}

func TestDrop(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	cl := dialClient(t, p.Addr())
	p.Drop(1, 7)
	_, _ = cl.query("lost")
	if !cl.closed() {
		t.Fatal("connection survived a dropped message")
	}
	if st := p.Stats(); st.Dropped != 1 {
		t.Fatalf("dropped %d, want 1", st.Dropped)
	}
	p.Drop(0, 0)
	dialClient(t, p.Addr()).mustQuery("kept")

	// A small rate drops about that fraction.
	p.Drop(0.05, 1)
	lost := 0
	for range 40 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		cl := &client{t: t, c: c, fe: pgproto3.NewFrontend(c, c)}
		cl.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": "u"}})
		ok := cl.fe.Flush() == nil
		if ok {
			_, err = cl.untilReady()
			ok = err == nil
		}
		for i := 0; ok && i < 5; i++ {
			_, err = cl.query("q")
			ok = err == nil
		}
		if !ok {
			lost++
		}
		c.Close()
	}
	// 40 connections of about 20 messages each at 5%: nearly all lost
	// some, but not every message was dropped.
	if st := p.Stats(); lost == 0 || st.Dropped < 10 || st.Dropped > 200 {
		t.Fatalf("lost %d connections, %d messages dropped", lost, st.Dropped)
	}
}

func TestCancelRequestIsCountedAndForwarded(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := make([]byte, 16)
	binary.BigEndian.PutUint32(pkt[0:], 16)
	binary.BigEndian.PutUint32(pkt[4:], 80877102)
	binary.BigEndian.PutUint32(pkt[8:], 1)
	binary.BigEndian.PutUint32(pkt[12:], 2)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "cancel")
	// The server closes first; then the proxy closes the client.
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("cancel connection got data")
	}
	if st := p.Stats(); st.CancelRequests != 1 {
		t.Fatalf("cancel requests %d, want 1", st.CancelRequests)
	}
}

func TestSSLRequestRefused(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.SSLRequest{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
		t.Fatalf("SSL answer %q, %v", b, err)
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c, fe: fe}
	if _, err := cl.untilReady(); err != nil {
		t.Fatal(err)
	}
	cl.mustQuery("after ssl refused")
}

func TestDialErrorClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newProxy(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c}
	if !cl.closed() {
		t.Fatal("client not closed when the target is down")
	}
	if st := p.Stats(); st.DialErrors != 1 {
		t.Fatalf("dial errors %d, want 1", st.DialErrors)
	}
}

func TestRequestIsCommit(t *testing.T) {
	for q, want := range map[string]bool{
		"COMMIT": true, "commit": true, " commit; ": true, "END": true, "COMMIT AND CHAIN": true,
		"commit_ts": false, "SELECT 'commit'": false, "": false,
	} {
		r := &Request{SQL: []string{q}}
		if got := r.IsCommit(); got != want {
			t.Errorf("IsCommit(%q) = %v, want %v", q, got, want)
		}
	}
	if (&Request{SQL: []string{"COMMIT", "COMMIT"}}).IsCommit() {
		t.Error("two statements are not a COMMIT")
	}
}

func TestRewrite(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	got, err := p.Rewrite("postgres://u:p@127.0.0.1:16432/db?sslmode=disable")
	if err != nil || got != "postgres://u:p@"+p.Addr()+"/db?sslmode=disable" {
		t.Fatalf("Rewrite: %q, %v", got, err)
	}
	if _, err := p.Rewrite("host=x"); err == nil {
		t.Fatal("Rewrite accepted a DSN without a host")
	}
}

func TestPipelinedRequestsKeepTheirAnswers(t *testing.T) {
	s := newEchoServer(t)
	p := newProxy(t, s.addr())
	p.SwallowAnswer(1, func(r *Request) bool { return r.Contains("second") })
	cl := dialClient(t, p.Addr())
	// Three requests in one write: the proxy reads them together.
	cl.fe.SendQuery(&pgproto3.Query{String: "first"})
	cl.fe.SendParse(&pgproto3.Parse{Query: "second"})
	cl.fe.SendBind(&pgproto3.Bind{})
	cl.fe.SendExecute(&pgproto3.Execute{})
	cl.fe.SendSync(&pgproto3.Sync{})
	cl.fe.SendQuery(&pgproto3.Query{String: "third"})
	if err := cl.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.untilReady(); err != nil || got != "first" {
		t.Fatalf("first answer: %q, %v", got, err)
	}
	// The second answer is swallowed and the connection closed: the third
	// request was sent, but its answer cannot arrive either.
	if got, err := cl.untilReady(); err == nil {
		t.Fatalf("an answer after the swallowed one: %q", got)
	}
	s.waitFor(t, "answered:second")
	if st := p.Stats(); st.Requests != 3 || st.Swallowed != 1 {
		t.Fatalf("stats %+v: want 3 requests, 1 swallowed", st)
	}
}

func TestAnswerValues(t *testing.T) {
	a := &Answer{Results: []Result{
		{Tag: "BEGIN"},
		{Columns: []string{"id", "done", "bin"}, Rows: [][][]byte{{[]byte("7"), []byte("t"), {1}}}, Tag: "SELECT 1"},
	}}
	if v, ok := a.Value("id"); !ok || string(v) != "7" {
		t.Fatalf("Value(id) = %q, %v", v, ok)
	}
	if !a.Bool("done") || !a.Bool("bin") || a.Bool("id") || a.Bool("missing") {
		t.Fatal("Bool: text t and binary 1 are true; anything else is not")
	}
	var none *Answer
	if none.Bool("done") {
		t.Fatal("a nil answer holds nothing")
	}
}
