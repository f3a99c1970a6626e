package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/latchgw/latch/gateway/h1"
	"github.com/latchgw/latch/gateway/metrics"
)

// connLimit enforces server.max_connections and
// server.max_connections_per_ip on the public listener through the
// servers' ConnContext and ConnState hooks (h1 and net/http both have
// them, and the connections keep their types: a TLS connection stays a
// *tls.Conn). A connection over a cap is not served: its first request is
// answered 503 with Connection: close (screen), then it closes; one that
// sends nothing closes at server.read_header_timeout. A connection handed
// over by an upgrade (WebSocket) leaves the count at its StateHijacked:
// net/http reports it at the hijack, so the tunnel runs uncounted; h1
// reports it when the handler, which runs the tunnel, returns, so there
// the connection counts until the tunnel ends.
//
// With TLS on h1 (tlsserve.SplitServer) a connection counts from accept, through
// its handshake: handshakes in progress were counted by nothing, and 6,000
// of them held 155 MB under max_connections: 200 (issue 23). One over a
// cap there is closed at once: answering it 503 would take the handshake
// the cap is there to bound.
type connLimit struct {
	max, perIP int
	m          *metrics.Series

	mu       sync.Mutex
	n        int
	byIP     map[netip.Addr]int
	admitted map[net.Conn]netip.Addr
}

// refusedConn marks a connection's context when a cap refused it; the
// value is the cap ("total" or "per_ip").
type refusedConn struct{}

func newConnLimit(max, perIP int, m *metrics.Series) *connLimit {
	if max <= 0 && perIP <= 0 {
		return nil
	}
	return &connLimit{max: max, perIP: perIP, m: m, byIP: map[netip.Addr]int{}, admitted: map[net.Conn]netip.Addr{}}
}

// connContext admits c, or marks its context refused. A connection
// admitted already (at accept, by tlsserve.SplitServer) passes.
func (l *connLimit) connContext(ctx context.Context, c net.Conn) context.Context {
	if why := l.Admit(c); why != "" {
		return context.WithValue(ctx, refusedConn{}, why)
	}
	return ctx
}

// Admit counts c in and returns "", or returns the cap that refuses it
// ("total" or "per_ip"), counted as refused. It admits a connection once.
func (l *connLimit) Admit(c net.Conn) (why string) {
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
		l.m.ConnRefused(why)
		return why
	}
	l.m.ConnOpened()
	return ""
}

// connState counts an admitted connection out when it ends.
func (l *connLimit) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		l.Release(c)
	}
}

// Release counts c out, if it was admitted.
func (l *connLimit) Release(c net.Conn) {
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
		l.m.ConnClosed()
	}
}

// headRejected counts a request gateway/h1 refused before the handler, by
// its kind (snake case: head_too_large, too_many_fields, head_memory, …),
// in latch_requests_refused_total.
func (g *Gateway) headRejected(k h1.Kind) {
	g.metrics.Refused(strings.NewReplacer(" ", "_", "-", "_").Replace(k.String()))
}
