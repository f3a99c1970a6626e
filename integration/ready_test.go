package integration

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
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
	cfg.Consul.RoutesFromTags = config.Set(true)
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
	// The restarted agent restores the backend's TTL check critical until
	// something updates it, so latch is ready at discovery.first_check_wait
	// (10 s) after Consul's first answer, at the latest.
	c.Start(t)
	harness.WaitFor(t, 30*time.Second, "ready once Consul answers", func() bool { code, _ := readyz(); return code == 200 })
	if v := metricValue(t, l.AdminURL, `latch_discovery_stale{service="web"}`); v != 0 {
		t.Fatalf("latch_discovery_stale = %v after Consul answered; want 0", v)
	}
}

// consul.tag routes only the instances carrying the tag, for config routes
// and for routes from tags alike.
func TestConsulTagFilter(t *testing.T) {
	c := harness.StartConsul(t)
	prod, canary := startSwitchable(t, "web-prod"), startSwitchable(t, "web-canary")
	c.Register(t, prod.id, "web", prod.addr(), "prod")
	c.Register(t, canary.id, "web", canary.addr(), "canary")
	other := startSwitchable(t, "shop-canary")
	c.Register(t, other.id, "shop", other.addr(), "canary", "latch.route=/shop")
	tagged := startSwitchable(t, "api-prod")
	c.Register(t, tagged.id, "api", tagged.addr(), "prod", "latch.route=/api")
	cfg := harness.LatchConfig(c.HTTPAddr, "", "web")
	cfg.Consul.RoutesFromTags = config.Set(true)
	cfg.Consul.Tag = "prod"
	l := harness.StartLatch(t, cfg)
	never(t, l.URL+"/", "web-canary", 50)
	if id, status := backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/api/x"); status != 200 || id != "api-prod" {
		t.Fatalf("/api: %d from %q; want the prod-tagged service's tag route", status, id)
	}
	// shop has no prod instance: no tag route for it, so /shop goes to web.
	if id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/shop"); id != "web-prod" {
		t.Fatalf("/shop reached %q; want web-prod (shop has no instance tagged prod)", id)
	}
}

// The Consul fields of the config file: HTTPS with the agent's CA and a
// client certificate, and the ACL token from a file.
func TestConsulTLSAndACLFromConfig(t *testing.T) {
	c := harness.StartSecureConsul(t)
	b := startSwitchable(t, "web-1")
	c.Register(t, b.id, "web", b.addr())
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(c.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := harness.LatchConfig("https://"+c.HTTPSAddr, "", "web")
	cfg.Consul.TokenFile = tokenFile
	cfg.Consul.Datacenter = "dc1"
	cfg.Consul.TLS.CAFile, cfg.Consul.TLS.CertFile, cfg.Consul.TLS.KeyFile = c.CAFile, c.CertFile, c.KeyFile
	l := harness.StartLatch(t, cfg)
	if id, status := backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/"); status != 200 || id != "web-1" {
		t.Fatalf("through the secured agent: %d from %q; want 200 from web-1", status, id)
	}
}
