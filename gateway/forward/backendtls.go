package forward

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// TLS to backends (a route's backend_tls). Each backend TLS config has its
// own pool, so a plain and a TLS connection to one address never mix: the
// fast path dials TCP and completes the handshake before the request, and
// the ReverseProxy path's Transport carries the same config. Backends are
// spoken to in HTTP/1.1 (no ALPN), as over plain TCP.

// poolFor is the pool of spec's backends.
func (f *Forwarder) poolFor(spec *config.Spec) *pool {
	tc := spec.BackendTLS()
	if tc == nil {
		return f.pool
	}
	if p, ok := f.tlsPools.Load(tc); ok {
		return p.(*pool)
	}
	p := newPool(f.cfg)
	p.std.TLSClientConfig = tc // the Transport names each backend itself
	plain := p.dial
	p.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := plain(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return handshake(ctx, nc, tc, addr, f.cfg.DialTimeout.Get())
	}
	actual, _ := f.tlsPools.LoadOrStore(tc, p)
	return actual.(*pool)
}

// handshake runs a TLS client handshake over nc, naming the backend by its
// host when the config names none. A failed handshake is a dial error:
// nothing of the request was sent, a retry is safe.
func handshake(ctx context.Context, nc net.Conn, tc *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	if tc.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		tc = tc.Clone()
		tc.ServerName = host // SNI when a name; verified as an IP SAN when an address
	}
	if timeout > 0 {
		_ = nc.SetDeadline(time.Now().Add(timeout)) // the dial timeout bounds the handshake too
	}
	c := tls.Client(nc, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, dialError{err}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// transport is ReverseProxy's Transport: the request's route's pool's.
type transport struct{ f *Forwarder }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	x := exchangeOf(r.Context())
	if x == nil {
		return t.f.pool.std.RoundTrip(r)
	}
	var w replyWatch
	resp, err := t.f.poolFor(x.spec).std.RoundTrip(w.trace(r))
	if err != nil {
		x.replied = w.replied()
	}
	return resp, err
}

// closeTLSIdle closes the idle connections of the backend TLS pools.
func (f *Forwarder) closeTLSIdle() {
	f.tlsPools.Range(func(_, v any) bool {
		v.(*pool).closeIdleConnections()
		return true
	})
}

// TransportFor is the http.Transport to spec's backends (active health
// checks share it): Transport's, or its backend TLS pool's.
func (f *Forwarder) TransportFor(spec *config.Spec) http.RoundTripper { return f.poolFor(spec).std }

// BackendScheme is "https" for a route whose backends speak TLS, else
// "http" (active health checks ask the same way).
func BackendScheme(spec *config.Spec) string {
	if spec.BackendTLS() != nil {
		return "https"
	}
	return "http"
}
