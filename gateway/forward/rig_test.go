package forward

// The test rig: a Forwarder over real loopback backends of a few kinds
// (echo, closed, hanging, resetting) and a session that offers them in order.

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// echo is a backend that answers with the request head it received, one
// line per field, sorted, after the request line and Host. /status/N
// answers N; /slow answers its head at once and its body 300ms later.
func echo(t *testing.T, id string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var code int
		if _, err := fmt.Sscanf(r.URL.Path, "/status/%d", &code); err == nil {
			w.WriteHeader(code)
			return
		}
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}
		body, _ := io.ReadAll(r.Body)
		var lines []string
		for k, vv := range r.Header {
			if k != "Accept-Encoding" && k != "User-Agent" {
				lines = append(lines, k+": "+strings.Join(vv, " | "))
			}
		}
		slices.Sort(lines)
		fmt.Fprintf(w, "%s %s %s\nHost: %s\n%s\nbody=%d\n", id, r.Method, r.URL.RequestURI(), r.Host,
			strings.Join(lines, "\n"), len(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rig is a Forwarder over a set of backends, with a session that offers
// them in order (skipping those tried) and records its commits.
type rig struct {
	f       *Forwarder
	spec    *config.Spec
	set     *policy.Set
	commits atomic.Int64
}

func newRig(t *testing.T, slow bool, route config.Route, mutate func(*config.Config), addrs ...string) *rig {
	t.Helper()
	if route.Service == "" {
		route.Service = "web"
	}
	cfg := config.Config{Routes: []config.Route{route}}
	if mutate != nil {
		mutate(&cfg)
	}
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	spec := cc.Routes()[0]
	var list []discovery.Backend
	for i, a := range addrs {
		list = append(list, discovery.Backend{ID: fmt.Sprintf("b%d", i), Service: "web", Addr: a, Weight: 1, Health: discovery.Passing})
	}
	reg := policy.NewRegistry("web", policy.Options{Breaker: spec.Route().Breaker.BreakerSettings(), WarningUsable: true})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := New(cc.Config().Transport, cc.Trusted(), log, nopObserver{})
	f.slowOnly = slow
	t.Cleanup(f.CloseIdleConnections)
	return &rig{f: f, spec: spec, set: reg.Update(discovery.Snapshot{Service: "web", Backends: list})}
}

type nopObserver struct{}

func (nopObserver) Retry(string)               {}
func (nopObserver) ClientError(string, string) {}
func (nopObserver) Refused(string)             {}

type rigSession struct{ r *rig }

// Pick offers the rig's backends in order, each with a done that marks
// the answer.
func (s rigSession) Pick(_ *http.Request, skip *policy.Skip) (*policy.Backend, func(http.Header, *policy.Backend)) {
	for _, b := range s.r.set.Backends {
		if !skip.Has(b) {
			return b, func(h http.Header, b *policy.Backend) {
				s.r.commits.Add(1)
				h.Set("X-Committed", b.ID)
			}
		}
	}
	return nil, nil
}

func (rigSession) Waiting() bool                           { return false }
func (rigSession) Settle(*http.Request, *policy.Skip) bool { return false }
func (rigSession) Upstream(*policy.Backend, time.Duration) {}

// do serves one request and returns the recorded response and result.
func (r *rig) do(req *http.Request) (*httptest.ResponseRecorder, Result) {
	w := httptest.NewRecorder()
	var res Result
	func() {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				panic(p)
			}
		}()
		res = r.f.Serve(w, req, r.spec, rigSession{r})
	}()
	return w, res
}

func get(target string, header map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "127.0.0.1:5555"
	r.Host = "shop.example.com"
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

var paths = []struct {
	name string
	slow bool
}{{"fast", false}, {"ReverseProxy", true}}

// reset is a backend that reads a request head and resets the connection
// without answering, as a backend killed mid-request does.
func reset(t *testing.T) string {
	return loopbackBackend(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		c.Close()
	})
}

func post(target, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:5555"
	r.Host = "shop.example.com"
	return r
}

// hang is a backend that reads requests and never answers.
func hang(t *testing.T) string {
	return loopbackBackend(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
}

// loopbackBackend accepts connections on a loopback port and hands each to
// handle on its own goroutine until the test ends; it returns the address.
func loopbackBackend(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { handle(c) })
		}
	})
	return ln.Addr().String()
}

// Issue 13: a breaker that refuses (half-open, its probe taken) used up an
// attempt: with retry.attempts 1 the client got a 502 instead of another
// backend.
