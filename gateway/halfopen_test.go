package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Issue 22: a backend whose breaker half-opens lets one probe through and
// refuses every other request until the probe has answered. Its pinned
// sessions are served elsewhere for those requests but stay pinned to it,
// so once the probe succeeded and the breaker closed they are all back on
// it. Before, each refused request re-pinned its session: the sessions
// left the backend exactly as it recovered.
func TestHalfOpenBreakerKeepsSessions(t *testing.T) {
	for _, path := range []string{"/", "/?fast=no;path"} { // the fast path, then ReverseProxy's
		t.Run(path, func(t *testing.T) { halfOpenKeepsSessions(t, path) })
	}
}

func halfOpenKeepsSessions(t *testing.T, path string) {
	const sessions = 8
	// a answers 503 while failing; while holding, a request waits for
	// release (the probe, kept in flight).
	var failing, holding atomic.Bool
	entered, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if holding.Load() {
			entered <- struct{}{}
			<-release
		}
		w.Header().Set("X-Backend-Id", "a")
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer func() { free(); srv.Close() }() // Close waits for a held request
	b := newBackend(t, "b")
	list := []discovery.Backend{
		{ID: "a", Service: "web", Addr: strings.TrimPrefix(srv.URL, "http://"), Weight: 1, Health: discovery.Passing},
		b.backend(),
	}
	codec := testCodec(t)
	aff := session.NewAffinity(session.Options{Store: session.NewMemoryStore(1000, nil), Codec: codec,
		Logger: slog.New(slog.DiscardHandler)})
	tg := startGatewayWith(t, func(c *config.Config) {
		c.Defaults.Policy = config.Set(config.List{"round_robin"})
		c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
		c.Defaults.Breaker.OpenTimeout = config.Set(50 * time.Millisecond)
	}, aff, list)
	backendA := func() *policy.Backend { return firstRoute(tg.g).Set().Lookup("a") }
	pinOf := func(cookie string) string {
		ck, ok := codec.Decode(strings.TrimPrefix(cookie, "latch="))
		if !ok {
			t.Fatalf("cookie %q does not decode", cookie)
		}
		id, _, err := aff.Lookup(context.Background(), "web", ck.ID)
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		return id
	}

	// Sessions on a while it is healthy (round robin: every other one);
	// the first trips a's breaker, the second is the probe.
	var cookies []string
	for len(cookies) < sessions+2 {
		if id, status, c := tg.get(t, path, ""); status == 200 && id == "a" {
			cookies = append(cookies, c)
		}
	}
	tripper, probe, pinned := cookies[0], cookies[1], cookies[2:]
	failing.Store(true)
	if id, status, _ := tg.get(t, path, tripper); id != "b" || status != 200 {
		t.Fatalf("request tripping a's breaker: %s %d; want b 200 (a's 503 retried)", id, status)
	}
	if s := backendA().Breaker(); s != policy.Open {
		t.Fatalf("a's breaker %v after a failure; want open", s)
	}
	failing.Store(false)
	holding.Store(true)
	waitUntil(t, "a's open timeout to pass", backendA().CanKeep)

	probed := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, tg.url+path, nil)
		req.Header.Set("Cookie", probe)
		resp, err := tg.client.Do(req)
		if err != nil {
			probed <- err.Error()
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		probed <- resp.Header.Get("X-Backend-Id")
	}()
	<-entered // the probe is at a: its breaker is half-open, its one probe taken
	if s := backendA().Breaker(); s != policy.HalfOpen {
		t.Fatalf("a's breaker %v with the probe in flight; want half-open", s)
	}
	for i, c := range pinned {
		id, status, set := tg.get(t, path, c)
		if id != "b" || status != 200 {
			t.Fatalf("session %d while a's probe is in flight: %s %d; want b 200", i, id, status)
		}
		if got := pinOf(c); got != "a" {
			t.Fatalf("session %d served by b while a's breaker is half-open: pinned to %q (Set-Cookie %q); want still a", i, got, set)
		}
		if set != "" {
			t.Fatalf("session %d served by b while a's breaker is half-open: Set-Cookie %q; want the cookie kept", i, set)
		}
	}
	if got := seriesValue(t, tg.g, "latch_sessions_total", map[string]string{"backend": "b", "outcome": "detoured"}); got != sessions {
		t.Fatalf("detoured sessions counted on b: %v; want %d", got, sessions)
	}
	holding.Store(false)
	free()
	if got := <-probed; got != "a" {
		t.Fatalf("probe answered by %q; want a", got)
	}
	if s := backendA().Breaker(); s != policy.Closed {
		t.Fatalf("a's breaker %v after a good probe; want closed", s)
	}
	for i, c := range append([]string{probe}, pinned...) {
		if id, status, _ := tg.get(t, path, c); id != "a" || status != 200 {
			t.Fatalf("session %d after a's breaker closed: %s %d; want back on a", i, id, status)
		}
	}
}
