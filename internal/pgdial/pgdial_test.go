package pgdial

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// startupMessage is a minimal protocol 3.0 StartupMessage.
func startupMessage() []byte {
	b := make([]byte, 9)
	binary.BigEndian.PutUint32(b, 9)
	binary.BigEndian.PutUint32(b[4:], protocolV3)
	return b
}

// readyForQuery is the server's ReadyForQuery, idle.
var readyForQuery = []byte{'Z', 0, 0, 0, 5, 'I'}

func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return l.Addr().String()
}

// A connection opened for a call with a deadline does not outlive the
// call while it starts, even when the driver asks for a later deadline
// (lib/pq's connect_timeout).
func TestStartupBoundByCallDeadline(t *testing.T) {
	t.Parallel()
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		time.Sleep(5 * time.Second) // a stalled pooler: no answer
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := New(false).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // what lib/pq does with connect_timeout
	if _, err := c.Write(startupMessage()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Read(make([]byte, 16))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read error = %v, want a deadline error", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("startup read waited %s; want about the call's 200ms", waited)
	}
}

// Once the startup exchange is over, the driver's own deadlines apply:
// the call's deadline does not cut later statements.
func TestDriverDeadlineAfterStartup(t *testing.T) {
	t.Parallel()
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write(readyForQuery)
		time.Sleep(400 * time.Millisecond) // past the dialing call's deadline
		_, _ = c.Write([]byte("late"))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := New(false).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(startupMessage()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, len(readyForQuery))); err != nil {
		t.Fatalf("startup answer: %v", err)
	}
	_ = c.SetDeadline(time.Time{}) // the driver clears its deadline after startup
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("read after startup: %v (the call's deadline must not outlive the startup)", err)
	}
}
