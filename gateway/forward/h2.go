package forward

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// HTTP/2 to backends (a route's backend_protocol h2c or h2). Those routes
// go through the ReverseProxy path, over an http.Transport whose Protocols
// allow HTTP/2 only: net/http's own HTTP/2 client (the bundled
// golang.org/x/net/http2) keeps one connection per backend, multiplexes
// the requests on it, and handles flow control, stream limits and GOAWAY;
// ReverseProxy streams both bodies as they come (gRPC's streams both
// ways) and relays trailers (grpc-status). The fast path, HTTP/1.1 of our
// own, has none of that to give.
//
// h2c is HTTP/2 with prior knowledge over plain TCP (a gRPC server without
// TLS); h2 is HTTP/2 negotiated by ALPN over the route's backend_tls. Each
// (protocol, TLS settings) pair has its own Transport, kept across reloads
// as the TLS pools are (backendtls.go) and retired with them.

// h2Key identifies an HTTP/2 Transport: cleartext (h2c) or the TLS
// settings of h2.
type h2Key struct {
	cleartext bool
	tls       config.TLSKey
}

// h2For is the HTTP/2 Transport of spec's backends.
func (f *Forwarder) h2For(spec *config.Spec) *http.Transport {
	key := h2Key{cleartext: spec.BackendProtocol() == config.ProtocolH2C, tls: spec.BackendTLSKey()}
	if t, ok := f.h2.Load(key); ok {
		return t.(*http.Transport)
	}
	t := newTransport(f.cfg)
	var p http.Protocols
	if key.cleartext {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
		// Issue 27: the Transport's own handshake failed untyped, and a
		// POST (every gRPC call) to a backend whose certificate the
		// route does not trust got 502 where nothing had been sent.
		// The handshake is the HTTP/1.1 pools' (handshake: a dial
		// error, bounded by the dial timeout), offering h2 only; the
		// config is a copy, as the route's is shared with its HTTP/1.1
		// pool.
		tc := spec.BackendTLS().Clone()
		tc.NextProtos = []string{"h2"}
		t.TLSClientConfig = tc
		dial, timeout := t.DialContext, f.cfg.DialTimeout.Get()
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return handshake(ctx, nc, tc, addr, timeout)
		}
	}
	t.Protocols = &p
	// A backend gone without a FIN (a crashed host, a cut link) would hold
	// every stream on its one connection until the kernel gave up: ping a
	// connection that has read nothing for a while, and close it when the
	// ping goes unanswered; and close a connection on which no byte could
	// be written for 30 s (a backend that stopped reading).
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second, WriteByteTimeout: 30 * time.Second}
	actual, _ := f.h2.LoadOrStore(key, t)
	return actual.(*http.Transport)
}

// retireH2 forgets the HTTP/2 Transports none of inUse speaks through and
// closes their idle connections (RetireTLSPools).
func (f *Forwarder) retireH2(inUse []*config.Spec) {
	keep := map[h2Key]bool{}
	for _, s := range inUse {
		if s.HTTP2() {
			keep[h2Key{cleartext: s.BackendProtocol() == config.ProtocolH2C, tls: s.BackendTLSKey()}] = true
		}
	}
	f.h2.Range(func(k, v any) bool {
		if !keep[k.(h2Key)] && f.h2.CompareAndDelete(k, v) {
			v.(*http.Transport).CloseIdleConnections()
		}
		return true
	})
}

// closeH2Idle closes the idle connections of the HTTP/2 Transports.
func (f *Forwarder) closeH2Idle() {
	f.h2.Range(func(_, v any) bool {
		v.(*http.Transport).CloseIdleConnections()
		return true
	})
}
