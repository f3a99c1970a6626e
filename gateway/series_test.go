package gateway

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/latchgw/latch/discovery"
)

// seriesValue reads one series of the gateway's registry: a counter's
// value or a histogram's count; -1 when the series does not exist.
func seriesValue(t testing.TB, g *Gateway, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return metricValue(m)
		}
	}
	return -1
}

// counter reads a counter or gauge of the gateway's registry as
// testutil.ToFloat64 on its vector's WithLabelValues would: a series not
// created yet is 0.
func counter(t testing.TB, g *Gateway, name string, labels map[string]string) float64 {
	t.Helper()
	return max(seriesValue(t, g, name, labels), 0)
}

func metricValue(m *dto.Metric) float64 {
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}

// The request path counts into series cached on the route's state: the
// figures are the ones WithLabelValues gave, a backend that leaves loses
// its series, and one that comes back gets them again from zero.
func TestSeriesCachedPerSnapshot(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, nil, a, b)
	cookieOf := map[string]string{}
	for len(cookieOf) < 2 { // a session on each backend
		id, status, c := tg.get(t, "/", "")
		if status != 200 || c == "" {
			t.Fatalf("status %d, cookie %q", status, c)
		}
		if cookieOf[id] == "" {
			cookieOf[id] = c
		}
	}
	before := map[string]float64{}
	for _, id := range []string{"a", "b"} {
		before[id] = seriesValue(t, tg.g, "latch_requests_total", map[string]string{"backend": id, "code": "2xx"})
		for range 3 {
			if got, status, _ := tg.get(t, "/", cookieOf[id]); got != id || status != 200 {
				t.Fatalf("sticky request went to %q (%d), want %q", got, status, id)
			}
		}
	}
	for _, id := range []string{"a", "b"} {
		l := map[string]string{"route": "web", "backend": id}
		if got := seriesValue(t, tg.g, "latch_requests_total", map[string]string{"backend": id, "code": "2xx"}); got != before[id]+3 {
			t.Errorf("requests of %s: %v, want %v", id, got, before[id]+3)
		}
		if got := seriesValue(t, tg.g, "latch_sessions_total", map[string]string{"backend": id, "outcome": "sticky"}); got != 3 {
			t.Errorf("sticky sessions of %s: %v, want 3", id, got)
		}
		if got := seriesValue(t, tg.g, "latch_upstream_duration_seconds", l); got != before[id]+3 {
			t.Errorf("upstream observations of %s: %v, want %v", id, got, before[id]+3)
		}
	}
	total := seriesValue(t, tg.g, "latch_request_duration_seconds", map[string]string{"route": "web"})
	if want := before["a"] + before["b"] + 6; total != want {
		t.Errorf("request durations: %v, want %v", total, want)
	}

	rt := firstRoute(tg.g)
	tg.static.Set("web", []discovery.Backend{a.backend()})
	waitUntil(t, "b to leave the route", func() bool { return rt.Set().Lookup("b") == nil })
	for _, name := range []string{"latch_requests_total", "latch_sessions_total", "latch_upstream_duration_seconds"} {
		if got := seriesValue(t, tg.g, name, map[string]string{"backend": "b"}); got != -1 {
			t.Errorf("%s of the departed backend b still exported (%v)", name, got)
		}
	}
	if got, _, _ := tg.get(t, "/", cookieOf["a"]); got != "a" {
		t.Fatalf("sticky request went to %q, want a", got)
	}
	if got := seriesValue(t, tg.g, "latch_sessions_total", map[string]string{"backend": "a", "outcome": "sticky"}); got != 4 {
		t.Errorf("sticky sessions of a after the new snapshot: %v, want 4 (the same series)", got)
	}

	tg.static.Set("web", []discovery.Backend{a.backend(), b.backend()})
	waitUntil(t, "b to come back", func() bool { return rt.Set().Lookup("b") != nil })
	if got, _, _ := tg.get(t, "/", cookieOf["b"]); got != "b" {
		t.Fatalf("request with b's cookie went to %q, want b", got)
	}
	if got := seriesValue(t, tg.g, "latch_requests_total", map[string]string{"backend": "b", "code": "2xx"}); got != 1 {
		t.Errorf("requests of b after its return: %v, want 1 (a new series)", got)
	}
}
