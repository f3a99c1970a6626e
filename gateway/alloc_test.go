package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// stickyAllocs is what a steady sticky GET costs latch in allocations, the
// client's connection and response writer aside (net/http's own): the
// request id (1, the client sent none), chi's route context (2: the
// context value and the request copy), the backend read's cancellation
// watch (2: context.AfterFunc), the response head and its header values
// (2), the breaker's two-step ticket (1: gobreaker's done closure).
const stickyAllocs = 8

// TestStickyAllocs pins the allocations of a steady sticky request through
// the whole handler (router, middleware, session, pick, breaker, the fast
// path to a real loopback backend, metrics), so that they cannot grow
// unnoticed. make test runs it without -race.
func TestStickyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under -race; make test runs this without it")
	}
	for _, format := range []string{"", "text", "json"} { // "": log.access false
		serve := stickyRig(t, format)
		if n := testing.AllocsPerRun(200, serve); n > stickyAllocs {
			t.Errorf("access log %q: a steady sticky request allocates %v times; want at most %d", format, n, stickyAllocs)
		} else if n < stickyAllocs {
			t.Logf("access log %q: a steady sticky request allocates %v times, fewer than %d: lower stickyAllocs", format, n, stickyAllocs)
		}
	}
}

// BenchmarkSticky is latch's handler alone on a steady sticky GET: no
// recorder, a reused request, a loopback backend that allocates nothing,
// so allocs/op are latch's (TestStickyAllocs pins them). "log" has the
// access log on (text, batched, written to io.Discard), as latch runs by
// default.
//
//	go test -run '^$' -bench BenchmarkSticky -benchmem ./gateway/
func BenchmarkSticky(b *testing.B) {
	for _, format := range []string{"", "text"} {
		name := "nolog"
		if format != "" {
			name = "log"
		}
		b.Run(name, func(b *testing.B) {
			serve := stickyRig(b, format)
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// stickyRig starts a gateway over one loopback backend and returns a
// function that sends it one steady sticky GET (the pools warmed). With
// accessLog "text" or "json" the access log is on, in that format, into
// io.Discard. with, if any, adjust the gateway's Deps.
func stickyRig(t testing.TB, accessLog string, with ...func(*Deps)) (serve func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go answerCanned(c)
		}
	}()
	mutate := func(c *config.Config) {
		c.Log.Access = config.Set(accessLog != "")
		c.Log.Format = accessLog
	}
	tg := startGatewayFull(t, mutate, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), []discovery.Backend{
		{ID: "a", Service: "web", Addr: ln.Addr().String(), Weight: 1, Health: discovery.Passing},
	}, append([]func(*Deps){func(d *Deps) { d.AccessLog = io.Discard }}, with...)...)
	h := tg.g.Handler()
	ctx, cancel := context.WithCancel(context.Background()) // a client's request context is cancelable
	t.Cleanup(cancel)
	req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	cookie := w.h.Get("Set-Cookie")
	if w.code != http.StatusOK || cookie == "" {
		t.Fatalf("first request: status %d, Set-Cookie %q", w.code, cookie)
	}
	req.Header.Set("Cookie", cookie)
	serve = func() {
		clear(w.h)
		w.code = 0
		delete(req.Header, "X-Request-Id")
		h.ServeHTTP(w, req)
	}
	for range 100 { // warm the pools
		serve()
	}
	if w.code != http.StatusOK || w.h.Get("Set-Cookie") != "" {
		t.Fatalf("steady sticky request: status %d, Set-Cookie %q; want 200 and none", w.code, w.h.Get("Set-Cookie"))
	}
	return serve
}

// discardWriter is a reusable http.ResponseWriter that keeps the status
// and header and drops the body.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// answerCanned answers every request on c with a fixed 200, allocating
// nothing per request (its allocations would count as latch's).
func answerCanned(c net.Conn) {
	defer c.Close()
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	br := bufio.NewReader(c)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}
