package gateway

import (
	"io"
	"strings"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// By default (retry.on_status 502, 503, 504) a backend answering 503 while
// its health check passes costs clients nothing: each idempotent request it
// answers is tried once more on another backend, on both forwarding paths,
// and a session pinned to it moves with that answer. Issue 11: with the
// old empty default, 5 of 60 requests got the 503 before its breaker
// opened.
func TestRetryOnStatusByDefault(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	// The breaker would take a out after 5 failures; this is about the
	// requests before that.
	tg := startGateway(t, func(c *config.Config) { c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1000) }, a, b, c)
	for _, path := range []string{"/", "/?fast=no;path"} { // the fast path, then ReverseProxy's
		a.status.Store(0)
		pinned := ""
		for pinned == "" { // a session on a while it is healthy
			if id, _, cookie := tg.get(t, path, ""); id == "a" {
				pinned = cookie
			}
		}
		a.status.Store(503)
		before := a.hits.Load()
		for i := range 30 {
			id, status, _ := tg.get(t, path, "")
			if status != 200 || id == "a" {
				t.Fatalf("%s, new session %d: %s %d; want 200 from b or c", path, i, id, status)
			}
		}
		for i := range 5 {
			id, status, cookie := tg.get(t, path, pinned)
			if status != 200 || id == "a" || (i == 0 && cookie == "") {
				t.Fatalf("%s, session pinned to a, request %d: %s %d cookie %q; want 200 from b or c, re-pinned", path, i, id, status, cookie)
			}
			if cookie != "" {
				pinned = cookie
			}
		}
		if a.hits.Load() == before {
			t.Fatalf("%s: a never asked: the test did not exercise a retry", path)
		}
	}
}

// Where a retry cannot help, the backend's own answer reaches the client,
// never an error page of latch's: a request that is not idempotent (its
// body went to the backend), a backend with nobody else to ask, and the
// second 503 when every backend answers 503 (once more only, so retries at
// most double an overloaded service's load). An explicit empty on_status
// turns retries on status off.
func TestRetryOnStatusLimits(t *testing.T) {
	t.Run("POST", func(t *testing.T) {
		a, b := newBackend(t, "a"), newBackend(t, "b")
		a.status.Store(503)
		tg := startGateway(t, func(c *config.Config) { c.Defaults.Policy = config.Set(config.List{"round_robin"}) }, a, b)
		got503 := 0
		for range 6 {
			resp, err := tg.client.Post(tg.url+"/", "text/plain", strings.NewReader("order=1"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 {
				got503++
				if !strings.HasPrefix(string(body), "a ") {
					t.Fatalf("503 body %q; want a's own", body)
				}
			}
		}
		if got503 != 3 || a.hits.Load() != 3 {
			t.Fatalf("%d of 6 POSTs got a's 503, a saw %d; want 3 and 3 (round robin, no retry of a POST)", got503, a.hits.Load())
		}
	})
	t.Run("alone", func(t *testing.T) {
		a := newBackend(t, "a")
		a.status.Store(503)
		tg := startGateway(t, nil, a)
		for _, path := range []string{"/", "/?fast=no;path"} {
			resp, err := tg.client.Get(tg.url + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.HasPrefix(string(body), "a ") {
				t.Fatalf("%s: %d %q; want a's own 503", path, resp.StatusCode, body)
			}
		}
	})
	t.Run("all 503", func(t *testing.T) {
		a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
		for _, x := range []*testBackend{a, b, c} {
			x.status.Store(503)
		}
		tg := startGateway(t, func(c *config.Config) { c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1000) }, a, b, c)
		for _, path := range []string{"/", "/?fast=no;path"} {
			before := a.hits.Load() + b.hits.Load() + c.hits.Load()
			id, status, _ := tg.get(t, path, "")
			sent := a.hits.Load() + b.hits.Load() + c.hits.Load() - before
			if status != 503 || id == "" || sent != 2 {
				t.Fatalf("%s: %q %d after %d backend requests; want a backend's 503 after 2", path, id, status, sent)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		a, b := newBackend(t, "a"), newBackend(t, "b")
		a.status.Store(503)
		tg := startGateway(t, func(c *config.Config) {
			c.Defaults.Policy = config.Set(config.List{"round_robin"})
			c.Defaults.Retry.OnStatus = config.Set([]int{})
		}, a, b)
		codes := map[int]int{}
		for range 4 {
			_, status, _ := tg.get(t, "/", "")
			codes[status]++
		}
		if codes[503] != 2 || codes[200] != 2 {
			t.Fatalf("on_status [] gave %v; want 2 × 503 and 2 × 200 (round robin, no retry)", codes)
		}
	})
}
