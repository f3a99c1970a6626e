package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// gauge reads one series of tg's registry; ok is false when it is absent.
func (tg *testGateway) gauge(t *testing.T, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := tg.g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			l := labels(m)
			for k, v := range want {
				if l[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// The per-backend series exist from a backend's first appearance, before
// any request or breaker change, follow drain and health, and leave with
// the backend.
func TestBackendSeriesFromTheFirstSecond(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, nil, a, b)
	want := func(name string, l map[string]string, v float64) {
		t.Helper()
		got, ok := tg.gauge(t, name, l)
		if !ok || got != v {
			t.Fatalf("%s%v = %v (present %v); want %v", name, l, got, ok, v)
		}
	}
	sb := func(id string) map[string]string { return map[string]string{"service": "web", "backend": id} }
	state := func(id, s string) map[string]string {
		return map[string]string{"service": "web", "backend": id, "state": s}
	}
	for _, id := range []string{"a", "b"} {
		want("latch_backend_up", sb(id), 1)
		want("latch_breaker_state", sb(id), 0) // before any breaker change
		want("latch_backend_in_flight", sb(id), 0)
		want("latch_backend_drained", sb(id), 0)
		want("latch_backend_health", state(id, "passing"), 1)
		for _, s := range []string{"warning", "critical", "draining"} {
			want("latch_backend_health", state(id, s), 0)
		}
	}

	resp, err := tg.client.Post(tg.admin+"/admin/backends/a/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want("latch_backend_up", sb("a"), 0)
	want("latch_backend_drained", sb("a"), 1)
	want("latch_backend_health", state("a", "draining"), 1)
	want("latch_backend_health", state("a", "passing"), 0)

	bad := b.backend()
	bad.Health = discovery.Critical
	tg.static.Set("web", []discovery.Backend{a.backend(), bad})
	waitUntil(t, "b critical", func() bool { v, _ := tg.gauge(t, "latch_backend_health", state("b", "critical")); return v == 1 })
	want("latch_backend_up", sb("b"), 0)
	want("latch_backend_health", state("b", "passing"), 0)

	// Both critical: panic mode serves from every backend but drained ones,
	// and latch_backend_up says so while the health still reads critical.
	badA := a.backend()
	badA.Health = discovery.Critical
	tg.static.Set("web", []discovery.Backend{badA, bad})
	waitUntil(t, "panic mode", func() bool {
		v, _ := tg.gauge(t, "latch_panic_mode", map[string]string{"service": "web"})
		return v == 1
	})
	want("latch_backend_up", sb("b"), 1)
	want("latch_backend_health", state("b", "critical"), 1)
	want("latch_backend_up", sb("a"), 0) // drained

	tg.static.Set("web", []discovery.Backend{a.backend()})
	waitUntil(t, "b's series gone", func() bool {
		for _, n := range []string{"latch_backend_up", "latch_backend_health", "latch_backend_in_flight",
			"latch_backend_drained", "latch_breaker_state"} {
			if _, ok := tg.gauge(t, n, sb("b")); ok {
				return false
			}
		}
		return true
	})
	want("latch_backend_up", sb("a"), 0)
}

// The metrics listener serves /metrics without the admin token, and
// nothing else; the admin listener still requires the token for it.
func TestMetricsListenerWithoutToken(t *testing.T) {
	tg := startGateway(t, func(c *config.Config) { c.Admin.Token = "s3cret" }, newBackend(t, "a"))
	get := func(url string) (int, string) {
		resp, err := tg.client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := get(tg.metrics + "/metrics")
	if code != http.StatusOK || !strings.Contains(body, `latch_backend_up{backend="a",service="web"} 1`) {
		t.Fatalf("metrics listener /metrics: %d\n%.500s", code, body)
	}
	for _, p := range []string{"/admin/backends", "/", "/healthz"} {
		if code, _ := get(tg.metrics + p); code != http.StatusNotFound {
			t.Errorf("metrics listener %s: %d; want 404", p, code)
		}
	}
	resp, err := tg.client.Post(tg.metrics+"/admin/backends/a/drain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the metrics listener drained a backend")
	}
	if code, _ := get(tg.admin + "/metrics"); code != http.StatusUnauthorized {
		t.Fatalf("admin /metrics without token: %d; want 401", code)
	}
}
