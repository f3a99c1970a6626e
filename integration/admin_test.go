package integration

import (
	"fmt"
	"time"

	"encoding/json"
	"github.com/latchgw/latch/integration/harness"
	"net/http"
	"net/url"
	"testing"
)

type adminBackends struct {
	Services []struct {
		Service  string `json:"service"`
		Stale    bool   `json:"stale"`
		Backends []struct {
			ID       string `json:"id"`
			Health   string `json:"health"`
			Breaker  string `json:"breaker"`
			Sessions int64  `json:"sessions"`
			Drained  bool   `json:"drained"`
		} `json:"backends"`
	} `json:"services"`
}

func getBackends(t *testing.T, adminURL string) adminBackends {
	t.Helper()
	return getBackendsTB(t, adminURL)
}

func getBackendsTB(t testing.TB, adminURL string) adminBackends {
	t.Helper()
	resp, err := http.Get(adminURL + "/admin/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out adminBackends
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding /admin/backends: %v", err)
	}
	return out
}

func adminStale(t *testing.T, adminURL, service string) bool {
	t.Helper()
	for _, s := range getBackends(t, adminURL).Services {
		if s.Service == service {
			return s.Stale
		}
	}
	t.Fatalf("service %s not in /admin/backends", service)
	return false
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// waitPassing waits until every backend of service is passing in latch's
// view (HTTP checks start critical until their first run).
func waitPassing(t testing.TB, adminURL, service string, n int) {
	t.Helper()
	harness.WaitFor(t, 20*time.Second, fmt.Sprintf("%d passing backends of %s", n, service), func() bool {
		resp, err := http.Get(adminURL + "/admin/backends")
		if err != nil {
			return false // not listening yet
		}
		var out adminBackends
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			return false
		}
		for _, s := range out.Services {
			if s.Service != service {
				continue
			}
			passing := 0
			for _, b := range s.Backends {
				if b.Health == "passing" {
					passing++
				}
			}
			return passing == n
		}
		return false
	})
}
