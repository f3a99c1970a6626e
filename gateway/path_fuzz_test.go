package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// FuzzRequestPath sends random bytes, as one client connection, through a
// gateway listening on loopback (h1, or LATCH_TEST_SERVER's) to a backend that
// numbers its answers. Whatever the bytes: latch never panics (no 500,
// nothing logged about a panic), never relays one backend answer twice,
// never relays more answers than the backend gave, and never opens the
// backend's breaker (a client's bytes are not the backend's failure).
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: h\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"GET http://h/x HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
		"TRACE / HTTP/1.1\r\nHost: h\r\n\r\nCONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
	} {
		f.Add([]byte(s))
	}
	var seq atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Seq", strconv.FormatInt(seq.Add(1), 10))
		_, _ = io.WriteString(w, "ok\n")
	}))
	f.Cleanup(backend.Close)
	var panics atomic.Int64
	tg := startGatewayLog(f, func(c *config.Config) {
		c.Server.ReadHeaderTimeout = config.Set(2 * time.Second)
		c.Server.IdleTimeout = config.Set(2 * time.Second)
		// One failure charged to the backend opens its breaker: the input
		// that charged it is the one reported.
		c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
	}, slog.New(panicCounter{&panics}), []discovery.Backend{{ID: "b", Service: "web", Addr: strings.TrimPrefix(backend.URL, "http://"), Weight: 1, Health: discovery.Passing}})
	opened := func(t testing.TB) float64 {
		return counter(t, tg.g, "latch_breaker_transitions_total", map[string]string{"service": "web", "backend": "b", "to": "open"})
	}
	addr := strings.TrimPrefix(tg.url, "http://")

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		before, openedBefore := seq.Load(), opened(t)
		out := exchangeRaw(t, addr, data)
		answered := seq.Load() - before
		if bytes.Contains(out, []byte("HTTP/1.1 500 ")) || bytes.Contains(out, []byte("HTTP/1.0 500 ")) || panics.Load() > 0 {
			t.Fatalf("%q: latch panicked:\n%s", data, out)
		}
		seen := map[string]bool{}
		for _, m := range seqField.FindAllSubmatch(out, -1) {
			if seen[string(m[1])] {
				t.Fatalf("%q: backend answer %s relayed twice:\n%s", data, m[1], out)
			}
			seen[string(m[1])] = true
		}
		if int64(len(seen)) > answered {
			t.Fatalf("%q: %d backend answers relayed, the backend gave %d", data, len(seen), answered)
		}
		if opened(t) > openedBefore {
			t.Fatalf("%q: the backend's breaker opened", data)
		}
	})
}

var seqField = regexp.MustCompile(`(?m)^X-Seq: (\d+)\r$`)

// exchangeRaw writes data on a new connection, half-closes it and reads
// what latch answers until it closes.
func exchangeRaw(t *testing.T, addr string, data []byte) []byte {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		_, _ = conn.Write(data)
		_ = conn.(*net.TCPConn).CloseWrite()
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%q: latch neither answered nor closed in 10s:\n%s", data, out)
	}
	return out
}

// panicCounter counts log records that report a panic.
type panicCounter struct{ n *atomic.Int64 }

func (p panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (p panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.n.Add(1)
	}
	return nil
}
func (p panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p panicCounter) WithGroup(string) slog.Handler      { return p }
