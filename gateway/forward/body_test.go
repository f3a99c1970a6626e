package forward

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// Issue 23: a request that announced a body and sent none held a backend
// connection for as long as the client liked (on HTTP/2, 250 of them per
// client connection), and nothing timed the wait out. Now no backend is
// asked before the body's first bytes arrive, and every wait for the
// client's body is bounded by server.body_timeout: 408, the client's fault,
// no breaker moved.
func TestBodyWaitHoldsNoBackend(t *testing.T) {
	for _, tc := range []struct {
		name, sent  string
		status      int
		backendConn bool // the backend was dialed
	}{
		{"no byte of the body", "", http.StatusRequestTimeout, false},
		{"half of the body", "abcde", http.StatusRequestTimeout, true},
		{"the whole body", "abcdefghij", http.StatusOK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dialed atomic.Int64
			backend := loopbackBackend(t, func(c net.Conn) {
				dialed.Add(1)
				serveOK(c)
			})
			r := newRig(t, false, config.Route{}, nil, backend)
			r.f.SetBodyTimeout(300 * time.Millisecond)
			c, br := h1Rig(t, r)
			write(t, c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"+tc.sent)
			if resp := read(t, br); resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tc.status)
			}
			if got := dialed.Load() > 0; got != tc.backendConn {
				t.Fatalf("backend dialed: %t; want %t", got, tc.backendConn)
			}
			b := r.set.Backends[0]
			if b.InFlight() != 0 || b.Breaker() != policy.Closed {
				t.Fatalf("backend in flight %d, breaker %v; want 0, closed", b.InFlight(), b.Breaker())
			}
		})
	}
}

// serveOK answers every request on c 200 after reading its body.
func serveOK(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// The route's timeout bounds the wait for a body's first bytes too, with
// no body timeout set (review of issue 23's change: awaitFirst waited only
// for server.body_timeout).
func TestRouteTimeoutEndsBodyWait(t *testing.T) {
	var dialed atomic.Int64
	backend := loopbackBackend(t, func(c net.Conn) { dialed.Add(1); serveOK(c) })
	route := config.Route{}
	route.Timeout = config.Set(300 * time.Millisecond)
	r := newRig(t, false, route, nil, backend)
	c, br := h1Rig(t, r)
	write(t, c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
	if resp := read(t, br); resp.StatusCode != http.StatusRequestTimeout || dialed.Load() != 0 {
		t.Fatalf("status %d, backend dialed %d times; want 408 and none", resp.StatusCode, dialed.Load())
	}
}
