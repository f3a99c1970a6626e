package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/session"
)

// BenchmarkServeHTTP measures latch's handler on the request path. The
// backend is an in-process httptest server and the client calls the
// handler directly, so the figures include the backend's own allocations;
// BenchmarkLoad (integration/) reads latch's alone from its /metrics.
//
//	go test -run '^$' -bench BenchmarkServeHTTP -benchmem ./gateway/
func BenchmarkServeHTTP(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer be.Close()
	tb := &testBackend{id: "a", srv: be}
	for _, bc := range []struct {
		name   string
		cookie bool
		access bool
	}{{"sticky", true, false}, {"new", false, false}, {"sticky+accesslog", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			tg := startGatewayB(b, bc.access, tb)
			h := tg.g.Handler()
			var cookie string
			if bc.cookie {
				_, _, cookie = tg.get(b, "/", "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodGet, "/", nil)
					if cookie != "" {
						r.Header.Set("Cookie", cookie)
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("status %d", w.Code)
					}
				}
			})
		})
	}
}

// BenchmarkScale shows that a request's cost does not grow with the number
// of backends or of sessions: the whole handler (routing, cookie check,
// session lookup, pick, breaker, the fast path's request and response
// heads, metrics) over 4 to 1,024 backends and 1,000 to 1,000,000 pinned
// sessions, each request carrying the cookie of the next session in turn.
// Backends are in-memory pipes answering a canned response, so the figure
// is latch's work without the kernel's.
//
// The last case is a control: 1,024 backends in the set but sessions on 4
// of them. Against 1,024 connections in use, a request's memory (its
// connection, buffers, the pipe's goroutine) is rarely in the CPU's cache;
// the control shows that cost is locality, which any proxy pays, and not
// latch's logic growing with the backend count.
//
//	go test -run '^$' -bench BenchmarkScale -benchmem ./gateway/
func BenchmarkScale(b *testing.B) {
	for _, nb := range []int{4, 64, 1024} {
		for _, ns := range []int{1_000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("backends=%d/sessions=%d", nb, ns), func(b *testing.B) {
				benchScale(b, nb, ns, nb)
			})
		}
	}
	b.Run("backends=1024/sessions=1000000/used=4", func(b *testing.B) { benchScale(b, 1024, 1_000_000, 4) })
}

// benchScale pins nSessions sessions over the first used of nBackends.
func benchScale(b *testing.B, nBackends, nSessions, used int) {
	list := pipeBackends(nBackends)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	affinity := session.NewAffinity(session.Options{
		Store:     session.NewMemoryStore(nSessions+1000, nil),
		CacheSize: 2 * nSessions, // latch's redis.cache_size: sized to the active sessions
		Codec:     testCodec(b),
		Logger:    log,
	})
	tg := startGatewayWith(b, nil, affinity, list)
	dials := dialPipes(tg)

	codec := tg.g.affinity.Codec()
	ttl := firstRoute(tg.g).Spec().Route().Sticky.TTL.Get()
	cookies := make([]string, nSessions)
	now := uint32(time.Now().Unix())
	for i := range cookies {
		id := session.NewID()
		be := list[i%used].ID
		if _, err := affinity.Pin(context.Background(), "web", id, be, ttl); err != nil {
			b.Fatal(err)
		}
		cookies[i] = "latch=" + codec.Encode(session.Cookie{ID: id, Hint: session.HintFor("web", be), Issued: now})
	}
	h := tg.g.Handler()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	serve := func(i int) {
		req.Header["Cookie"] = cookies[i%len(cookies) : i%len(cookies)+1]
		delete(req.Header, "X-Request-Id")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || w.Header().Get("Set-Cookie") != "" {
			b.Fatalf("status %d, Set-Cookie %q: want 200 on the pinned backend", w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	for i := range min(len(cookies), 10_000) { // warm the connection pools
		serve(i)
	}
	runtime.GC() // the setup's garbage is not the requests' cost
	b.ReportAllocs()
	dials.Store(0)
	for i := 0; b.Loop(); i++ {
		serve(i)
	}
	b.ReportMetric(float64(dials.Load())/float64(b.N), "dials/op")
}

// pipeBackends lists n passing backends of service web, web-0 to web-<n-1>,
// for dialPipes.
func pipeBackends(n int) []discovery.Backend {
	list := make([]discovery.Backend, n)
	for i := range list {
		list[i] = discovery.Backend{ID: fmt.Sprintf("web-%d", i), Service: "web",
			Addr: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256), Weight: 1, Health: discovery.Passing}
	}
	return list
}

// dialPipes makes tg's backend connections in-memory pipes answering a
// canned 200, and counts the dials.
func dialPipes(tg *testGateway) *atomic.Int64 {
	var dials atomic.Int64
	tg.g.fwd.SetDial(func(context.Context, string, string) (net.Conn, error) {
		dials.Add(1)
		c, backend := net.Pipe()
		go answerCanned(backend)
		return c, nil
	})
	return &dials
}
