package pgdial

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// message builds one server message.
func message(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// errorResponse builds an ErrorResponse from field codes and values.
func errorResponse(fields ...string) []byte {
	var body []byte
	for i := 0; i+1 < len(fields); i += 2 {
		body = append(body, fields[i][0])
		body = append(body, fields[i+1]...)
		body = append(body, 0)
	}
	return message('E', append(body, 0))
}

// Interrupt ends a read in progress, and no later SetDeadline (a driver
// clearing its deadline) makes the connection usable again.
func TestInterruptIsFinal(t *testing.T) {
	t.Parallel()
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		time.Sleep(3 * time.Second) // a stalled server
	})
	nc, err := New(false).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*Conn)
	defer c.Close()
	time.AfterFunc(100*time.Millisecond, c.Interrupt)
	start := time.Now()
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read error = %v, want a deadline error", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("the interrupted read waited %v", waited)
	}
	for _, clear := range []func(time.Time) error{c.SetDeadline, c.SetReadDeadline, c.SetWriteDeadline} {
		_ = clear(time.Time{})
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read after clearing the deadline = %v, want a deadline error", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write after Interrupt = %v, want a deadline error", err)
	}
	if !c.Interrupted() {
		t.Error("Interrupted() = false")
	}
}

// TakeFatal returns the FATAL error the server sent after the startup,
// however the stream was cut into reads, and skips everything else (an
// ERROR, rows, a notice).
func TestTakeFatal(t *testing.T) {
	t.Parallel()
	fatal := errorResponse("S", "FATAL", "V", "FATAL", "C", "57P01", "M", "terminating connection due to administrator command")
	var stream []byte
	stream = append(stream, message('R', []byte{0, 0, 0, 0})...)
	stream = append(stream, message('K', []byte{0, 0, 0, 7, 1, 2, 3, 4})...)
	stream = append(stream, readyForQuery...)
	stream = append(stream, errorResponse("S", "ERROR", "C", "42601", "M", "syntax error")...)
	stream = append(stream, message('D', make([]byte, 70000))...) // a row larger than what is kept
	stream = append(stream, message('N', []byte("notice\x00\x00"))...)
	for i := range 5 { // small messages, several to a read: skipped by their length
		stream = append(stream, message('D', make([]byte, i))...)
	}
	stream = append(stream, readyForQuery...)
	stream = append(stream, fatal...)
	for _, chunk := range []int{1, 3, 7, 4096, len(stream)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			t.Parallel()
			addr := listen(t, func(c net.Conn) {
				defer c.Close()
				if _, err := c.Read(make([]byte, 64)); err != nil {
					return
				}
				for rest := stream; len(rest) > 0; {
					n := min(chunk, len(rest))
					if _, err := c.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
			})
			nc, err := New(true).TrackErrors().DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c := nc.(*Conn)
			defer c.Close()
			if _, err := c.Write(startupMessage()); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, len(stream))); err != nil {
				t.Fatal(err)
			}
			f := c.TakeFatal()
			if f == nil || f['C'] != "57P01" || f['M'] != "terminating connection due to administrator command" || f.Severity() != "FATAL" {
				t.Fatalf("TakeFatal() = %v", f)
			}
			if again := c.TakeFatal(); again != nil {
				t.Errorf("a second TakeFatal() = %v, want nil", again)
			}
			if !c.keyed {
				t.Error("BackendKeyData not learnt")
			}
		})
	}
}

// Without TrackErrors the dialer stops following the stream after the
// startup, and keeps nothing.
func TestTakeFatalUntracked(t *testing.T) {
	t.Parallel()
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		if _, err := c.Read(make([]byte, 64)); err != nil {
			return
		}
		_, _ = c.Write(append(append([]byte{}, readyForQuery...), errorResponse("S", "FATAL", "C", "57P01", "M", "bye")...))
	})
	nc, err := New(true).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*Conn)
	defer c.Close()
	if _, err := c.Write(startupMessage()); err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(c)
	if f := c.TakeFatal(); f != nil {
		t.Errorf("TakeFatal() = %v, want nil without TrackErrors", f)
	}
}
