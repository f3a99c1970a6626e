package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward/faultyclient"
)

// Issue 17: broken uploads counted as failures of the backend, so a few
// dozen opened every breaker and moved every session. Through the whole
// gateway (cookies, sessions, breakers at one failure): each client-fault
// class, aimed at one backend's session or at every backend's, leaves the
// breakers closed and the sessions where they were, and is counted in
// latch_client_errors_total by cause.
func TestClientFaultsLeaveBackendsAlone(t *testing.T) {
	for _, k := range faultyclient.Classes {
		for _, spread := range []string{"one backend", "all backends"} {
			t.Run(k.Name+"/"+spread, func(t *testing.T) {
				a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
				tg := startGateway(t, func(cfg *config.Config) {
					cfg.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
					cfg.Defaults.Breaker.OpenTimeout = config.Set(time.Minute)
					cfg.Defaults.Timeout = config.Set(300 * time.Millisecond) // ends the slow bodies
				}, a, b, c)
				cookieOf := map[string]string{}
				var order []string
				for len(cookieOf) < 3 { // a session on each backend
					id, status, cookie := tg.get(t, "/", "")
					if status != 200 || cookie == "" {
						t.Fatalf("status %d, cookie %q", status, cookie)
					}
					if cookieOf[id] == "" {
						cookieOf[id] = cookie
						order = append(order, id)
					}
				}
				targets := order[:1]
				if spread == "all backends" {
					targets = order
				}
				const n = 6
				for i := range n {
					id := targets[i%len(targets)]
					got, err := k.Send(strings.TrimPrefix(tg.url, "http://"), "shop.example.com", "/upload",
						[]string{"Cookie: " + cookieOf[id]}, 10*time.Second)
					if err != nil && k.Want != 0 || got != k.Want {
						t.Fatalf("request %d on %s's session: status %d (err %v); want %d", i, id, got, err, k.Want)
					}
				}
				waitUntil(t, "the faults counted", func() bool {
					return seriesValue(t, tg.g, "latch_client_errors_total", map[string]string{"route": "web", "cause": k.Cause}) == n
				})
				if v := seriesValue(t, tg.g, "latch_client_errors_total", nil); v != n {
					t.Fatalf("%v client errors; want %d, all %s", v, n, k.Cause)
				}
				if v := seriesValue(t, tg.g, "latch_breaker_transitions_total", nil); v != -1 {
					t.Fatalf("a breaker changed state (%v transitions)", v)
				}
				for id, cookie := range cookieOf {
					if got, status, _ := tg.get(t, "/after", cookie); got != id || status != 200 {
						t.Errorf("%s's session answered by %q (%d)", id, got, status)
					}
				}
			})
		}
	}
}
