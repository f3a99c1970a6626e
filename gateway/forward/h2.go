package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
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
			c, asked := certAsked(tc)
			conn, err := handshake(ctx, nc, c, addr, timeout)
			if err != nil || !asked.Load() || conn.(*tls.Conn).ConnectionState().Version < tls.VersionTLS13 {
				return conn, err
			}
			return awaitPreface(ctx, conn.(*tls.Conn), timeout)
		}
	}
	t.Protocols = &p
	// A backend gone without a FIN (a crashed host, a cut link) would hold
	// every stream on its one connection until the kernel gave up: ping a
	// connection that has read nothing for a while, and close it when the
	// ping goes unanswered.
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	actual, _ := f.h2.LoadOrStore(key, t)
	return actual.(*http.Transport)
}

// Issue 27: in TLS 1.3 the client's handshake is over before the server
// has read the client's certificate; a backend that refuses it (mTLS)
// says so with an alert after, which the Transport read only once the
// request was written: a POST got 502 where the backend had taken none of
// it. When the backend asked for a certificate under TLS 1.3, the dial
// goes on until the server's connection preface (its SETTINGS) arrives,
// as grpc-go's client does before it calls a connection ready: an alert
// instead is a dial error (nothing of any request was sent, a retry is
// safe), bounded by the dial timeout as the handshake is. The client's
// preface is written to provoke it (a server may wait for it) and left
// out of what the Transport then writes. A server that asked for no
// certificate, or TLS 1.2 (whose handshake carries the refusal), costs
// nothing more.

// certAsked is a copy of tc for one dial that records whether the server
// asked for a client certificate.
func certAsked(tc *tls.Config) (*tls.Config, *atomic.Bool) {
	asked := new(atomic.Bool)
	c := tc.Clone()
	get := tc.GetClientCertificate
	c.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		if get != nil {
			return get(info)
		}
		for i := range tc.Certificates {
			if info.SupportsCertificate(&tc.Certificates[i]) == nil {
				return &tc.Certificates[i], nil
			}
		}
		return &tls.Certificate{}, nil // none: the server decides
	}
	return c, asked
}

// clientPreface opens every HTTP/2 connection (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// awaitPreface writes the client's preface on c and reads the first bytes
// the server sends, within timeout.
func awaitPreface(ctx context.Context, c *tls.Conn, timeout time.Duration) (net.Conn, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	buf := make([]byte, 64)
	n := 0
	_, err := c.Write([]byte(clientPreface))
	if err == nil {
		n, err = c.Read(buf)
	}
	if err != nil {
		c.Close()
		return nil, dialError{fmt.Errorf("awaiting the server's preface: %w", err)}
	}
	_ = c.SetDeadline(time.Time{})
	return &prefacedConn{Conn: c, skip: len(clientPreface), read: buf[:n]}, nil
}

// prefacedConn is a connection whose client preface is written and whose
// first bytes from the server are read: it leaves the preface out of the
// Transport's first writes and gives back the bytes on the first reads.
// The Transport writes under one lock and reads on one goroutine, so
// neither field is shared. The embedded *tls.Conn gives the Transport its
// ConnectionState (ALPN's "h2").
type prefacedConn struct {
	*tls.Conn
	skip int    // preface bytes still to leave out of writes
	read []byte // server bytes still to give back
}

var errPrefaceMismatch = errors.New("http/2 transport wrote no client preface")

func (p *prefacedConn) Write(b []byte) (int, error) {
	if p.skip == 0 {
		return p.Conn.Write(b)
	}
	n := min(p.skip, len(b))
	if string(b[:n]) != clientPreface[len(clientPreface)-p.skip:][:n] {
		return 0, errPrefaceMismatch
	}
	p.skip -= n
	if n == len(b) {
		return n, nil
	}
	m, err := p.Conn.Write(b[n:])
	return n + m, err
}

func (p *prefacedConn) Read(b []byte) (int, error) {
	if len(p.read) == 0 {
		return p.Conn.Read(b)
	}
	n := copy(b, p.read)
	p.read = p.read[n:]
	return n, nil
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
