//go:build go1.26

package pq

// This file is added by poolsafe's peer runner (internal/peer) to its copy
// of lib/pq. The copy (module poolsafe.peer.invalid/github.com/lib/pq)
// shares the test binary with the real lib/pq that poolsafe uses, so its
// types and sentinel errors are not the real ones: the runner renames
// conn.go's sql.Register call to peerRegister, the upstream dial to
// peerUpstreamDial and the upstream As to peerUpstreamAs, and this file
// bridges the copy's error identities to the real lib/pq's.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"

	realpq "github.com/lib/pq"
	"poolsafe.peer.invalid/github.com/lib/pq/pqerror"
)

// The exported sentinel errors are the real lib/pq's, so that a test's
// err == ErrInFailedTransaction holds for what poolsafe returns.
func init() {
	ErrNotSupported = realpq.ErrNotSupported
	ErrInFailedTransaction = realpq.ErrInFailedTransaction
	ErrSSLNotSupported = realpq.ErrSSLNotSupported
	ErrCouldNotDetectUsername = realpq.ErrCouldNotDetectUsername
	ErrChannelAlreadyOpen = realpq.ErrChannelAlreadyOpen
	ErrChannelNotOpen = realpq.ErrChannelNotOpen
}

// As is upstream's As, which also finds the real lib/pq's *Error (the one
// poolsafe's errors wrap on driver pq) and returns a copy of its exported
// fields as the copy's *Error.
func As(err error, codes ...pqerror.Code) *Error {
	if e := peerUpstreamAs(err, codes...); e != nil {
		return e
	}
	var real *realpq.Error
	if !errors.As(err, &real) {
		return nil
	}
	e := new(Error)
	dst, src := reflect.ValueOf(e).Elem(), reflect.ValueOf(real).Elem()
	for i := range dst.NumField() {
		f := dst.Type().Field(i)
		if sf := src.FieldByName(f.Name); f.IsExported() && sf.IsValid() && sf.Type().ConvertibleTo(f.Type) {
			dst.Field(i).Set(sf.Convert(f.Type))
		}
	}
	if len(codes) > 0 && !slices.Contains(codes, e.Code) {
		return nil
	}
	return e
}

// peerRegister registers the copy under another name: the real lib/pq
// already holds "postgres", which the suite's sql.Open calls no longer
// use anyway (they open poolsafe).
func peerRegister(name string, d driver.Driver) {
	sql.Register("poolsafe-peer-copy-of-"+name, d)
}

// dial is the copy's only way to the network (connections and cancel
// requests). It refuses everything but loopback IP addresses — host names,
// even localhost, and unix sockets included — so the suite's tests of
// lib/pq's own connector (multiple hosts, unroutable addresses, its
// default host) reach nothing but the scripted servers some tests start
// on 127.0.0.1.
func dial(ctx context.Context, d Dialer, cfg Config) (net.Conn, error) {
	network, address := cfg.network()
	host, _, err := net.SplitHostPort(address)
	a, perr := netip.ParseAddr(host)
	if network != "tcp" || err != nil || perr != nil || !a.IsLoopback() {
		return nil, fmt.Errorf("peer: the copy of lib/pq refuses to dial %s %s: the peer suites send traffic to 127.0.0.1 only", network, address)
	}
	return peerUpstreamDial(ctx, d, cfg)
}
