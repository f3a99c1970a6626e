package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// Issue 12: with routes from tags only, /readyz said ready while every
// request got 404. Ready now means the catalog and its services answered.
func TestReadyMeansCanRoute(t *testing.T) {
	c := harness.StartConsul(t)
	b := startSwitchable(t, "shop-1")
	c.Register(t, b.id, "shop", b.addr(), "latch.route=/")
	cfg := harness.LatchConfig(c.HTTPAddr, "", "unused")
	cfg.Routes = nil
	on := true
	cfg.Consul.RoutesFromTags = &on
	l := harness.StartLatch(t, cfg) // returns at the first 200 from /readyz
	if id, status := backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/"); status != 200 || id != "shop-1" {
		t.Fatalf("first request after ready: %d from %q; want 200 from shop-1", status, id)
	}
}

// Consul down at start: not ready, the body says what it waits for, and
// the stale series exist (1) so an alert on them fires; ready and fresh
// once Consul answers.
func TestReadyWaitsForConsul(t *testing.T) {
	c := harness.StartConsul(t)
	b := startSwitchable(t, "web-1")
	c.Register(t, b.id, "web", b.addr())
	c.Stop(t)
	l := harness.StartLatchUnready(t, harness.LatchConfig(c.HTTPAddr, "", "web"))
	readyz := func() (int, string) {
		resp, err := http.Get(l.AdminURL + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	harness.WaitFor(t, 10*time.Second, "the admin listener", func() bool { code, _ := readyz(); return code != 0 })
	if code, body := readyz(); code != 503 || !strings.Contains(body, "service web") {
		t.Fatalf("readyz with Consul down: %d %q; want 503 naming service web", code, body)
	}
	if v := metricValue(t, l.AdminURL, `latch_discovery_stale{service="web"}`); v != 1 {
		t.Fatalf("latch_discovery_stale = %v with Consul down at start; want 1", v)
	}
	if v := metricValue(t, l.AdminURL, `latch_discovery_last_fresh_timestamp_seconds{service="web"}`); v != 0 {
		t.Fatalf("last fresh timestamp = %v before any answer; want 0", v)
	}
	c.Start(t)
	harness.WaitFor(t, 15*time.Second, "ready once Consul answers", func() bool { code, _ := readyz(); return code == 200 })
	if v := metricValue(t, l.AdminURL, `latch_discovery_stale{service="web"}`); v != 0 {
		t.Fatalf("latch_discovery_stale = %v after Consul answered; want 0", v)
	}
}
