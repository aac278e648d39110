package driverconf_test

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// answer is what the fake server does with one request.
type answer int

const (
	answerOK    answer = iota // CommandComplete and ReadyForQuery
	answerStall               // never answers: a stalled network or pooler
	answerFatal               // the server's FATAL ErrorResponse, then it closes
)

// fakeServer is a PostgreSQL server of a few lines, for what a real one
// will not do on demand: it accepts any startup without a password, then
// answers each request — a simple Query, or extended-protocol messages up
// to a Sync — as decide says. It answers only BEGIN, COMMIT, ROLLBACK and
// other simple queries with an empty result; decide picks which stall or
// end with fatal.
type fakeServer struct {
	addr   string
	fatal  *pgproto3.ErrorResponse
	decide func(sql string) answer
	// atStartup: the FATAL goes out in answer to the startup message.
	atStartup bool

	cancels atomic.Int32 // CancelRequests received

	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startFakeServer(t *testing.T, fatal *pgproto3.ErrorResponse, decide func(sql string) answer) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: l.Addr().String(), fatal: fatal, decide: decide, done: make(chan struct{})}
	t.Cleanup(func() {
		close(s.done)
		l.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	go func() {
		for pid := uint32(1000); ; pid++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c, pid)
		}
	}()
	return s
}

// url is a transaction-pooler URL to the server (port 6543 is not needed:
// the tests set the pool mode).
func (s *fakeServer) url() string {
	return "postgres://app:pw@" + s.addr + "/app?sslmode=disable&connect_timeout=5"
}

func (s *fakeServer) serve(c net.Conn, pid uint32) {
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		case *pgproto3.StartupMessage:
		case *pgproto3.CancelRequest:
			s.cancels.Add(1)
			return
		default:
			return
		}
		break
	}
	if s.atStartup {
		be.Send(s.fatal)
		_ = be.Flush()
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{
		{"server_version", "15.0"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
	} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	status := byte('I')
	// The request being assembled: message kinds ('P' Parse, 'B' Bind,
	// 'S'/'D' Describe of a statement or portal, 'E' Execute) and the SQL
	// of its Parse messages. (pgproto3 reuses a message after the next
	// Receive, so none is kept.)
	var pending []byte
	var stmts []string
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		var sql string
		switch m := msg.(type) {
		case *pgproto3.Query:
			sql = m.String
		case *pgproto3.Sync:
			sql = strings.Join(stmts, ";")
		case *pgproto3.Terminate:
			return
		case *pgproto3.Parse:
			pending, stmts = append(pending, 'P'), append(stmts, m.Query)
			continue
		case *pgproto3.Bind:
			pending = append(pending, 'B')
			continue
		case *pgproto3.Describe:
			if m.ObjectType == 'S' {
				pending = append(pending, 'S')
			} else {
				pending = append(pending, 'D')
			}
			continue
		case *pgproto3.Execute:
			pending = append(pending, 'E')
			continue
		default:
			continue
		}
		switch s.decide(sql) {
		case answerStall:
			<-s.done // until the test ends; the client may close first
			return
		case answerFatal:
			be.Send(s.fatal)
			_ = be.Flush()
			return
		}
		tag := "SELECT 0"
		switch up := strings.ToUpper(strings.TrimSpace(sql)); {
		case strings.HasPrefix(up, "BEGIN"), strings.HasPrefix(up, "START"):
			tag, status = "BEGIN", 'T'
		case strings.HasPrefix(up, "COMMIT"), strings.HasPrefix(up, "END"):
			tag, status = "COMMIT", 'I'
		case strings.HasPrefix(up, "ROLLBACK"):
			tag, status = "ROLLBACK", 'I'
		}
		if _, simple := msg.(*pgproto3.Query); simple {
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		}
		// An extended-protocol request: each message's answer, for a
		// statement without parameters or result columns.
		for _, k := range pending {
			switch k {
			case 'P':
				be.Send(&pgproto3.ParseComplete{})
			case 'B':
				be.Send(&pgproto3.BindComplete{})
			case 'S':
				be.Send(&pgproto3.ParameterDescription{})
				be.Send(&pgproto3.NoData{})
			case 'D':
				be.Send(&pgproto3.NoData{})
			case 'E':
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
			}
		}
		pending, stmts = nil, nil
		be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
		if be.Flush() != nil {
			return
		}
	}
}
