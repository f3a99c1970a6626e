package gateway

import (
	"net/http"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// Issue 27: a session keyed on a header whose backend answered a
// retry.on_status code (503) was re-pinned to the backend that took the
// retry. A header's value is no secret of latch's making (a bearer token,
// a user id): anyone who knew it could move another client's session by
// provoking 503s. The retry is a detour now: the other backend serves
// that request, the pin stays. (Cookie sessions still move with the
// answer, TestRetryOnStatusByDefault: latch's cookie is a random signed id
// only its holder has.)
func TestStickyOnHeaderStatusRetryDetours(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	byID := map[string]*testBackend{"a": a, "b": b, "c": c}
	tg := startGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
		cfg.Routes[0].Sticky.Header = config.Set("X-Api-Session")
		// The breaker would take the backend out after 5 failures; this
		// is about the requests before that.
		cfg.Routes[0].Breaker.ConsecutiveFailures = config.Set[uint32](1000)
	}, a, b, c)
	get := func(path, session string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tg.url+path, nil)
		req.Header.Set("X-Api-Session", session)
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Backend-Id")
	}
	for _, path := range []string{"/", "/?fast=no;path"} { // the fast path, then ReverseProxy's
		session := "victim" + path
		_, pinned := get(path, session)
		if pinned == "" {
			t.Fatalf("%s: no backend answered", path)
		}
		byID[pinned].status.Store(503)
		before := byID[pinned].hits.Load()
		for i := range 3 { // another client with the same header value
			if code, got := get(path, session); code != 200 || got == pinned {
				t.Fatalf("%s: request %d while %s answers 503: %d from %s; want 200 from another backend", path, i, pinned, code, got)
			}
		}
		if byID[pinned].hits.Load() != before+3 {
			t.Fatalf("%s: %s was asked %d times; want each of the 3 requests asked there first", path, pinned, byID[pinned].hits.Load()-before)
		}
		byID[pinned].status.Store(0)
		for i := range 5 {
			if code, got := get(path, session); code != 200 || got != pinned {
				t.Fatalf("%s: request %d once %s answers again: %d from %s; want 200 from %s, the pin kept", path, i, pinned, code, got, pinned)
			}
		}
	}
}
