package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// A service registered with latch.* tags is routed with no config change,
// un-routed when it leaves, and a config route wins a conflict, which is
// reported.
func TestRoutesFromConsulTags(t *testing.T) {
	c := harness.StartConsul(t)
	web, api, rogue := startSwitchable(t, "web-1"), startSwitchable(t, "api-1"), startSwitchable(t, "rogue-1")
	c.Register(t, "web-1", "web", web.addr())
	cfg := harness.LatchConfig(c.HTTPAddr, "", "web")
	cfg.Consul.RoutesFromTags = config.Set(true)
	l := harness.StartLatch(t, cfg)

	client := &http.Client{Timeout: 5 * time.Second}
	if id, _ := backendOf(t, client, l.URL+"/api/items"); id != "web-1" {
		t.Fatalf("/api before any tag route: %s; want the config route's web-1", id)
	}
	c.Register(t, "api-1", "api", api.addr(), "latch.route=/api", "latch.sticky=false")
	c.Register(t, "rogue-1", "rogue", rogue.addr(), "latch.route=/") // conflicts with the config route
	harness.WaitFor(t, 10*time.Second, "the tag route /api", func() bool {
		id, _ := backendOf(t, client, l.URL+"/api/items")
		return id == "api-1"
	})
	if id, _ := backendOf(t, client, l.URL+"/other"); id != "web-1" {
		t.Fatalf("/other: %s; want web-1 (the config route wins over rogue's latch.route=/)", id)
	}
	var conflicts []string
	harness.WaitFor(t, 10*time.Second, "rogue's conflict to be reported", func() bool {
		resp, err := http.Get(l.AdminURL + "/admin/routes")
		if err != nil {
			t.Fatal(err)
		}
		var routes struct {
			Conflicts []string `json:"conflicts"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&routes)
		resp.Body.Close()
		conflicts = routes.Conflicts
		return len(conflicts) > 0
	})
	if len(conflicts) != 1 || !strings.Contains(conflicts[0], "rogue") {
		t.Fatalf("conflicts %q; want rogue's reported", conflicts)
	}
	if id, _ := backendOf(t, client, l.URL+"/other"); id != "web-1" {
		t.Fatalf("/other after the conflict: %s; want web-1", id)
	}
	if rogue.hits.Load() != 0 {
		t.Fatal("the conflicting tag route received traffic")
	}
	c.Deregister(t, "api-1")
	harness.WaitFor(t, 10*time.Second, "the tag route to vanish", func() bool {
		id, _ := backendOf(t, client, l.URL+"/api/items")
		return id == "web-1"
	})
}

// /metrics exposes the documented names, and they move with traffic.
func TestMetricsMove(t *testing.T) {
	c := harness.StartConsul(t)
	e := startSwitchable(t, "web-1")
	c.Register(t, "web-1", "web", e.addr())
	l := harness.StartLatch(t, harness.LatchConfig(c.HTTPAddr, "", "web"))
	scrape := func() string { return scrapeMetrics(t, l.AdminURL) }
	client := harness.Client()
	for range 5 {
		backendOf(t, client, l.URL+"/")
	}
	m := scrape()
	for _, want := range []string{
		`latch_requests_total{backend="web-1",code="2xx",route="web"} 5`,
		`latch_sessions_total{backend="web-1",outcome="new",route="web"} 1`,
		`latch_sessions_total{backend="web-1",outcome="sticky",route="web"} 4`,
		`latch_request_duration_seconds_count{route="web"} 5`,
		`latch_upstream_duration_seconds_count{backend="web-1",route="web"} 5`,
		`latch_discovery_stale{service="web"} 0`,
		`latch_backends{health="passing",service="web"} 1`,
		"latch_discovery_updates_total", "latch_discovery_last_fresh_timestamp_seconds", "latch_panic_mode",
		"latch_session_cache_total", "latch_route_conflicts",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
