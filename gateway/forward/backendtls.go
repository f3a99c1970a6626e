package forward

import (
	"context"
	"crypto/tls"
	"errors"
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
//
// Pools are keyed by what the config is built from (config.TLSKey), not by
// the *tls.Config: every reload compiles new configs, and keyed by them
// each reload handshook again with every backend and left the old pools
// behind, idle connections and all (issue 22). The gateway retires the
// pools no route uses any more after each change of its routes
// (RetireTLSPools).

// poolFor is the pool of spec's backends.
func (f *Forwarder) poolFor(spec *config.Spec) *pool {
	tc := spec.BackendTLS()
	if tc == nil {
		return f.pool
	}
	key := spec.BackendTLSKey()
	if p, ok := f.tlsPools.Load(key); ok {
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
	actual, _ := f.tlsPools.LoadOrStore(key, p)
	return actual.(*pool)
}

// RetireTLSPools forgets the backend TLS pools of settings none of inUse
// has and closes their idle connections. Connections in flight finish
// their requests, go back to their forgotten pool and close at the idle
// timeout, as idle connections do. A request that took its route before
// the change may still open a retired pool again; the next call retires
// it. Safe for concurrent use.
func (f *Forwarder) RetireTLSPools(inUse []*config.Spec) {
	keep := map[config.TLSKey]bool{}
	for _, s := range inUse {
		if s.BackendTLS() != nil {
			keep[s.BackendTLSKey()] = true
		}
	}
	f.tlsPools.Range(func(k, v any) bool {
		if !keep[k.(config.TLSKey)] && f.tlsPools.CompareAndDelete(k, v) {
			v.(*pool).closeIdleConnections()
		}
		return true
	})
	f.retireH2(inUse)
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

// handshakeAlerts are the texts of the TLS alerts a server sends only to
// refuse a handshake: about the client's certificate (or its lack of
// one), or no terms in common.
var handshakeAlerts = func() map[string]bool {
	m := map[string]bool{}
	for _, a := range []tls.AlertError{40, 42, 43, 44, 45, 46, 48, 49, 116} { // handshake_failure, bad_certificate … access_denied, certificate_required
		m[a.Error()] = true
	}
	return m
}()

// refusedHandshake reports whether err is a backend's TLS alert refusing
// latch's handshake. In TLS 1.3 the client's handshake is over before
// the server has checked the client's side of it: a server that wants a
// client certificate says so in an alert that only the first read meets,
// after the request was written (issue 27: a POST got 502). The server
// processed nothing, so the request may go to another backend whatever
// its method, as after a failed dial. (crypto/tls reports a peer's alert
// as a net.OpError "remote error" around an unexported alert type whose
// text is tls.AlertError's.)
func refusedHandshake(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && handshakeAlerts[oe.Err.Error()]
}

// transport is ReverseProxy's Transport: the request's route's pool's.
type transport struct{ f *Forwarder }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	x := exchangeOf(r.Context())
	if x == nil {
		return t.f.pool.std.RoundTrip(r)
	}
	var w replyWatch
	rt := t.f.poolFor(x.spec).std
	if x.spec.HTTP2() {
		// On a connection many streams share, a byte read may be
		// another stream's: replied errs toward "the backend answered",
		// which only ever spares a resend.
		rt = t.f.h2For(x.spec)
	}
	resp, err := rt.RoundTrip(w.trace(r))
	// An answer the pipeline then refuses (modifyResponse) was an answer:
	// the request is not sent again, as on the fast path.
	x.replied = err == nil || w.replied()
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
func (f *Forwarder) TransportFor(spec *config.Spec) http.RoundTripper {
	if spec.HTTP2() {
		return f.h2For(spec)
	}
	return f.poolFor(spec).std
}

// BackendScheme is "https" for a route whose backends speak TLS, else
// "http" (active health checks ask the same way).
func BackendScheme(spec *config.Spec) string {
	if spec.BackendTLS() != nil {
		return "https"
	}
	return "http"
}
