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
	// latch_session_counts_age_seconds is the age at the scrape: half a
	// second after a refresh it is half a second or more (it was the age
	// at the refresh, about 0, until the next one). A refresh between the
	// two reads of SessionsCountedAt makes the try void.
	svc := tg.g.routes.Service("web")
	for try := 0; ; try++ {
		at := svc.SessionsCountedAt()
		time.Sleep(time.Until(at.Add(500 * time.Millisecond))) // the age to check for, not a wait for an event
		before := time.Now()
		age := scrapeCountsAge(t, tg)
		after := time.Now()
		if svc.SessionsCountedAt() != at {
			if try == 20 {
				t.Fatal("a refresh between every scrape and its check")
			}
			continue
		}
		if low, high := before.Sub(at).Seconds(), after.Sub(at).Seconds(); age < low || age > high {
			t.Fatalf("latch_session_counts_age_seconds %.3f; want the age at the scrape, %.3f–%.3f", age, low, high)
		}
		break
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

// scrapeCountsAge gathers latch_session_counts_age_seconds from tg's
// registry (-1 when it has no series).
func scrapeCountsAge(t *testing.T, tg *testGateway) float64 {
	t.Helper()
	families, err := tg.g.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "latch_session_counts_age_seconds" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
