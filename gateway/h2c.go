package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/latchgw/latch/gateway/h1"
)

// h2c on the public listener (server.h2c, issue 27): HTTP/2 without TLS,
// with prior knowledge (RFC 9113 §3.3), as gRPC clients inside a network
// speak it. The HTTP/2 server is the one that serves HTTP/2 over TLS
// (gateway.go's std: net/http's, with server.max_concurrent_streams,
// server.max_header_bytes as its header list limit and the server
// timeouts), told to accept unencrypted HTTP/2 through net/http's
// Protocols (Go 1.24). On server.implementation net/http that server
// reads the preface itself; on h1, h2cServer sorts the connections.
//
// The HTTP/1.1 Upgrade to h2c (RFC 7540 §3.2) is not served: RFC 9113
// §3.1 deprecated it, net/http's Protocols left it out, no gRPC client
// sends it, and it makes a request with a body the first stream of an
// HTTP/2 connection. dropH2CUpgrade has the request served in HTTP/1.1,
// as RFC 9110 §7.8 lets a server ignore an Upgrade, and keeps the
// Upgrade from reaching a backend: one that honoured it would switch the
// connection latch relays to HTTP/2 and serve every later stream without
// latch seeing it (h2c smuggling).

// withH2C turns h2c on for srv, the plain public listener's server: std
// accepts unencrypted HTTP/2 as well (implementation net/http), or an
// h2cServer hands h1s the HTTP/1 connections and std the HTTP/2 ones.
func (g *Gateway) withH2C(srv server, h1s *h1.Server, std *http.Server) server {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	std.Protocols = &p
	if srv == server(std) {
		p.SetHTTP1(true)
		return std
	}
	return &h2cServer{h1: h1s, h2: std, timeout: handshakeTimeout(g.c.Server.ReadHeaderTimeout.Get()), conns: g.conns}
}

// h2cServer serves a plain listener with h1 (HTTP/1.x) and net/http's
// HTTP/2 server (connections that open with the client preface). It
// sorts a connection by peeking at its first bytes (peekPreface, which
// reads nothing), so either server gets the socket itself: h1 still
// parks idle connections. A connection counts against the caps (conns)
// from accept, while it is sorted; one over a cap is closed at once, as
// splitServer does (a 503 would need its first bytes sorted).
type h2cServer struct {
	h1      *h1.Server
	h2      *http.Server
	timeout time.Duration // bounds the wait for the first bytes
	conns   *connLimit    // nil: no cap

	mu      sync.Mutex
	closed  bool
	outer   net.Listener
	h1l     *connListener
	h2l     *connListener
	pending map[net.Conn]struct{} // being sorted
	served  sync.WaitGroup        // the two servers' Serve, and sorting
}

var _ server = (*h2cServer)(nil)

// Serve accepts on l until Shutdown or Close; it fails if l's
// connections cannot be peeked at (not sockets, or not on unix).
func (s *h2cServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.outer, s.pending = l, map[net.Conn]struct{}{}
	s.h1l, s.h2l = newConnListener(l.Addr()), newConnListener(l.Addr())
	s.mu.Unlock()
	if !peekSupported {
		return errNoPeek
	}
	s.served.Go(func() { _ = s.h1.Serve(s.h1l) })
	s.served.Go(func() { _ = s.h2.Serve(s.h2l) })
	log := s.h1.Log
	if log == nil {
		log = slog.Default()
	}
	return h1.AcceptLoop(l, s.isClosed, log, s.sort)
}

func (s *h2cServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sort starts sorting c, accepted: counted in, then handed to the server
// of its first bytes.
func (s *h2cServer) sort(c net.Conn) bool {
	if s.conns != nil && s.conns.admit(c) != "" {
		c.Close()
		return true
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.drop(c)
		return false
	}
	s.pending[c] = struct{}{}
	s.mu.Unlock()
	go s.hand(c)
	return true
}

// hand waits (server.read_header_timeout at most) for c's first bytes
// and gives c to the server they are for.
func (s *h2cServer) hand(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.timeout))
	h2, err := peekPreface(c)
	_ = c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	closed := s.closed
	s.mu.Unlock()
	if err != nil || closed {
		// Silent, gone or closed before it said anything latch can serve.
		s.drop(c)
		return
	}
	to := s.h1l
	if h2 {
		to = s.h2l
	}
	if !to.hand(c) {
		s.drop(c)
	}
}

// drop closes c, which no server got, and counts it out.
func (s *h2cServer) drop(c net.Conn) {
	c.Close()
	if s.conns != nil {
		s.conns.release(c)
	}
}

// stop stops accepting and closes the connections being sorted.
func (s *h2cServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.outer != nil {
		s.outer.Close()
		s.h1l.Close()
		s.h2l.Close()
	}
	for c := range s.pending {
		c.Close()
	}
}

// Shutdown stops accepting and lets both servers finish their requests.
func (s *h2cServer) Shutdown(ctx context.Context) error {
	s.stop()
	err := errors.Join(s.h1.Shutdown(ctx), s.h2.Shutdown(ctx))
	s.served.Wait()
	return err
}

// Close closes every connection at once.
func (s *h2cServer) Close() error {
	s.stop()
	err := errors.Join(s.h1.Close(), s.h2.Close())
	s.served.Wait()
	return err
}

// h2cOff answers HTTP/2's preface on a plain listener without server.h2c
// (net/http; gateway/h1 answers it 505 as it parses).
const h2cOff = "latch: HTTP/2 without TLS (h2c) is off: see server.h2c\n"

// h2cPreface is HTTP/2's client connection preface (RFC 9113 §3.4).
const h2cPreface = http2.ClientPreface

// errNoPeek: the connection is not a socket peekPreface can look into.
var errNoPeek = errors.New("h2c: cannot peek at the connection (not a socket on unix)")

// prefaceSoFar sorts the first bytes of a connection: h2 once they are
// the whole client preface, done once they cannot be (HTTP/1), neither
// while they may still become it.
func prefaceSoFar(got []byte) (h2, done bool) {
	if !strings.HasPrefix(h2cPreface, string(got)) {
		return false, true
	}
	return len(got) == len(h2cPreface), len(got) == len(h2cPreface)
}

// dropH2CUpgrade removes h2c from r's Upgrade, and HTTP2-Settings (the
// Upgrade's companion, RFC 7540 §3.2.1): latch serves the request in
// HTTP/1.1 and forwards no h2c upgrade (see the comment at the top). An
// Upgrade left empty is removed, so the request takes the plain path.
func dropH2CUpgrade(r *http.Request) {
	up := r.Header["Upgrade"]
	if len(up) == 0 || !httpguts.HeaderValuesContainsToken(up, "h2c") {
		return
	}
	var keep []string
	for _, v := range up {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" && !strings.EqualFold(p, "h2c") {
				keep = append(keep, p)
			}
		}
	}
	if len(keep) == 0 {
		r.Header.Del("Upgrade")
	} else {
		r.Header["Upgrade"] = []string{strings.Join(keep, ", ")}
	}
	r.Header.Del("Http2-Settings")
}
