package gateway

import (
	"errors"
	"net/http"
	"strings"

	"golang.org/x/net/http2"

	"github.com/latchgw/latch/gateway/h1"
	"github.com/latchgw/latch/gateway/tlsserve"
)

// h2c on the public listener (server.h2c, issue 27): HTTP/2 without TLS,
// with prior knowledge (RFC 9113 §3.3), as gRPC clients inside a network
// speak it. The HTTP/2 server is the one that serves HTTP/2 over TLS
// (gateway.go's std: net/http's, with server.max_concurrent_streams,
// server.max_header_bytes as its header list limit and the server
// timeouts), told to accept unencrypted HTTP/2 through net/http's
// Protocols (Go 1.24). On server.implementation net/http that server
// reads the preface itself; on h1, tlsserve.SplitServer sorts the connections.
//
// The HTTP/1.1 Upgrade to h2c (RFC 7540 §3.2) is not served: RFC 9113
// §3.1 deprecated it, net/http's Protocols left it out, no gRPC client
// sends it, and it makes a request with a body the first stream of an
// HTTP/2 connection. admission's Screen has the request served in HTTP/1.1,
// as RFC 9110 §7.8 lets a server ignore an Upgrade, and keeps the
// Upgrade from reaching a backend: one that honoured it would switch the
// connection latch relays to HTTP/2 and serve every later stream without
// latch seeing it (h2c smuggling).

// withH2C turns h2c on for srv, the plain public listener's server: std
// accepts unencrypted HTTP/2 as well (implementation net/http), or a
// tlsserve.SplitServer without TLS hands h1s the HTTP/1 connections and std the
// HTTP/2 ones, sorted by their first bytes (peekPreface, which reads
// nothing: either server gets the socket itself, and h1 still parks idle
// connections). There a connection counts against the caps from accept,
// and one over a cap is closed at once (a 503 would need its first bytes
// sorted).
func (g *Gateway) withH2C(srv server, h1s *h1.Server, std *http.Server) server {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	std.Protocols = &p
	if srv == server(std) {
		p.SetHTTP1(true)
		return std
	}
	if !peekSupported {
		g.log.Error("server.h2c needs server.implementation net/http on this platform: serving HTTP/1 only")
		return srv
	}
	return &tlsserve.SplitServer{H1: h1s, H2: std, Peek: peekPreface,
		Timeout: tlsserve.HandshakeTimeout(g.c.Server.ReadHeaderTimeout.Get()), Caps: g.conns, Log: g.log.Warn}
}

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
