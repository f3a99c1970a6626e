package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// With least_sessions, the gateway counts each new session on its backend
// at once (the request path's atomic add) and the background refresh
// replaces those figures by the store's counts, exporting their age; the
// admin API shows each backend's live sessions and target share.
func TestLeastSessionsCountsWired(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, func(c *config.Config) {
		c.Routes[0].Policy = config.Set(config.List{"least_sessions"})
	}, a, b)
	set := tg.g.routes.Service("web").Set()
	known := func() int64 { return set.Lookup("a").Sessions() + set.Lookup("b").Sessions() }

	const n = 12
	var cookies []string
	for range n {
		_, _, c := tg.get(t, "/", "")
		cookies = append(cookies, c)
	}
	if got := known(); got < n {
		t.Fatalf("%d sessions known right after %d new ones; want each counted at once", got, n)
	}
	for _, c := range cookies[:n/2] { // half come back: their pins reach the store
		tg.get(t, "/", c)
	}
	// The refresh (once a second) replaces the local figures with the
	// store's: the sessions that never came back are no load.
	deadline := time.Now().Add(10 * time.Second)
	for known() != n/2 || tg.g.routes.Service("web").SessionsCountedAt().IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("sessions known %d; want the %d stored after a refresh", known(), n/2)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	families, err := tg.g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	age := -1.0
	for _, f := range families {
		if f.GetName() == "latch_session_counts_age_seconds" {
			age = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if age < 0 || age > 5 {
		t.Fatalf("latch_session_counts_age_seconds %v; want a fresh count's age", age)
	}

	resp, err := tg.client.Get(tg.admin + "/admin/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Services []ServiceStatus `json:"services"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Services) != 1 {
		t.Fatalf("GET /admin/backends: %d %s", resp.StatusCode, body)
	}
	var total int64
	for _, bs := range out.Services[0].Backends {
		total += bs.Sessions
		if bs.TargetShare != 0.5 {
			t.Errorf("%s: target share %v; want 0.5", bs.ID, bs.TargetShare)
		}
	}
	if total != n/2 {
		t.Errorf("admin API shows %d live sessions; want %d", total, n/2)
	}
}
