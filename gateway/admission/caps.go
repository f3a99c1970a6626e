package admission

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// Caps enforces server.max_connections and
// server.max_connections_per_ip on the public listener through the
// servers' ConnContext and ConnState hooks (h1 and net/http both have
// them, and the connections keep their types: a TLS connection stays a
// *tls.Conn). A connection over a cap is not served: its first request is
// answered 503 with Connection: close (Screen), then it closes; one that
// sends nothing closes at server.read_header_timeout. A connection handed
// over by an upgrade (WebSocket) leaves the count at its StateHijacked:
// net/http reports it at the hijack, so the tunnel runs uncounted; h1
// reports it when the handler, which runs the tunnel, returns, so there
// the connection counts until the tunnel ends.
//
// With TLS on h1 (tlsserve.SplitServer) a connection counts from accept,
// through its handshake: handshakes in progress were counted by nothing, and 6,000
// of them held 155 MB under max_connections: 200 (issue 23). One over a
// cap there is closed at once: answering it 503 would take the handshake
// the cap is there to bound.
//
// A nil *Caps caps nothing: it admits every connection. Its methods are
// safe for concurrent use; it satisfies tlsserve.Caps.
type Caps struct {
	max, perIP int
	obs        Observer

	mu       sync.Mutex
	n        int
	byIP     map[netip.Addr]int
	admitted map[net.Conn]netip.Addr
}

// refusedConn marks a connection's context when a cap refused it; the
// value is the cap ("total" or "per_ip").
type refusedConn struct{}

// NewCaps caps the connections at max in all and perIP from one client
// address (≤ 0: no such cap), counted through obs. With neither cap it
// returns nil.
func NewCaps(max, perIP int, obs Observer) *Caps {
	if max <= 0 && perIP <= 0 {
		return nil
	}
	return &Caps{max: max, perIP: perIP, obs: obs, byIP: map[netip.Addr]int{}, admitted: map[net.Conn]netip.Addr{}}
}

// ConnContext is the servers' ConnContext hook: it admits c, or marks its
// context refused (Screen answers its requests 503). A connection
// admitted already (at accept, by tlsserve.SplitServer) passes.
func (l *Caps) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if why := l.Admit(c); why != "" {
		return context.WithValue(ctx, refusedConn{}, why)
	}
	return ctx
}

// Admit counts c in and returns "", or returns the cap that refuses it
// ("total" or "per_ip"), counted as refused. It admits a connection once.
func (l *Caps) Admit(c net.Conn) (why string) {
	if l == nil {
		return ""
	}
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		addr = ap.Addr().Unmap()
	}
	l.mu.Lock()
	if _, in := l.admitted[c]; in {
		l.mu.Unlock()
		return ""
	}
	switch {
	case l.max > 0 && l.n >= l.max:
		why = "total"
	case l.perIP > 0 && l.byIP[addr] >= l.perIP:
		why = "per_ip"
	default:
		l.n++
		if l.perIP > 0 {
			l.byIP[addr]++
		}
		l.admitted[c] = addr
	}
	l.mu.Unlock()
	if why != "" {
		l.obs.ConnRefused(why)
		return why
	}
	l.obs.ConnOpened()
	return ""
}

// ConnState is the servers' ConnState hook: it counts an admitted
// connection out when it ends.
func (l *Caps) ConnState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		l.Release(c)
	}
}

// Release counts c out, if it was admitted.
func (l *Caps) Release(c net.Conn) {
	if l == nil {
		return
	}
	l.mu.Lock()
	addr, ok := l.admitted[c]
	if ok {
		delete(l.admitted, c)
		l.n--
		if l.perIP > 0 {
			if l.byIP[addr]--; l.byIP[addr] <= 0 {
				delete(l.byIP, addr)
			}
		}
	}
	l.mu.Unlock()
	if ok {
		l.obs.ConnClosed()
	}
}
