package gateway

import (
	"github.com/latchgw/latch/gateway/config"

	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/statuspage"
)

// The status page is served without the token (it holds no data), its
// JSON only with it; the JSON reflects traffic, sessions and drains.
func TestStatusPage(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, func(c *config.Config) { c.Admin.Token = "s3cret" }, a, b)
	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", tg.admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	resp, body := get("/", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="latch-token-required" content="true"`) {
		t.Fatalf("GET /: %d, token flag missing in %.200q", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}
	for _, p := range []string{"/assets/page.js", "/assets/page.css"} {
		if resp, body := get(p, ""); resp.StatusCode != 200 || len(body) < 1000 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}
	for _, tok := range []string{"", "wrong"} {
		if resp, _ := get("/admin/status", tok); resp.StatusCode != 401 {
			t.Errorf("GET /admin/status with token %q: %d; want 401", tok, resp.StatusCode)
		}
	}

	tg.g.sampler.Sample()
	sessions := 0
	for range 10 {
		if _, _, c := tg.get(t, "/", ""); c != "" {
			sessions++
			tg.get(t, "/", c) // back once: its pin is written (in the background)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := tg.g.affinity.Sessions(context.Background(), "web", []string{"a", "b"}); n["a"]+n["b"] < int64(sessions); n, _ = tg.g.affinity.Sessions(context.Background(), "web", []string{"a", "b"}) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions in the store %v; want %d", n, sessions)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tg.g.sampler.Sample()
	if s := doStatus(t, tg, "POST", "/admin/backends/a/drain"); s != 200 {
		t.Fatalf("drain: %d", s)
	}
	resp, body = get("/admin/status", "s3cret")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /admin/status: %d %s", resp.StatusCode, body)
	}
	var st statuspage.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || len(st.Services[0].Backends) != 2 || len(st.Routes) != 1 {
		t.Fatalf("status: %+v", st)
	}
	svc := st.Services[0]
	if svc.Sessions != int64(sessions) {
		t.Errorf("service sessions %d; want %d", svc.Sessions, sessions)
	}
	var rate, share float64
	for _, be := range svc.Backends {
		rate += be.ReqRate
		share += be.Share
		if want := map[string]string{"a": "draining", "b": "passing"}[be.ID]; be.State != want || be.Breaker != "closed" {
			t.Errorf("backend %s: state %s breaker %s; want %s, closed", be.ID, be.State, be.Breaker, want)
		}
		if len(be.Requests) == 0 {
			t.Errorf("backend %s: no request series", be.ID)
		}
	}
	if rate <= 0 || share < 0.99 || share > 1.01 {
		t.Errorf("request rate %v, session shares sum to %v; want > 0 and 1", rate, share)
	}
	if chain := st.Routes[0].Chain; len(chain) == 0 || chain[len(chain)-1].Policy != "round_robin" {
		t.Errorf("route chain %+v; want it to end in round_robin", chain)
	}
	// (This gateway's session layer reports no cache lookups: the ratio is
	// checked by the browser test, on a latch wired as cmd/latch wires it.)
	if st.Store.Kind != "memory" || !st.Store.Up || !st.Store.Reachable {
		t.Errorf("store %+v", st.Store)
	}
}

func doStatus(t *testing.T, tg *testGateway, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, tg.admin+path, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
