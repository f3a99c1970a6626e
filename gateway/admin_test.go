package gateway

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/latchgw/latch/gateway/config"
)

// labels are m's labels by name (for the tests that read latch's series
// back; the status page's sampler has its own in gateway/admin).
func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func TestAdminTokenAndDrain(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, func(c *config.Config) { c.Admin.Token = "s3cret" }, a, b)
	do := func(method, path, token string) int {
		req, _ := http.NewRequest(method, tg.admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := do("GET", "/healthz", ""); s != 200 {
		t.Errorf("healthz %d; want 200 without a token", s)
	}
	for _, p := range []string{"/admin/backends", "/metrics", "/admin/routes"} {
		if s := do("GET", p, ""); s != 401 {
			t.Errorf("GET %s without token: %d; want 401", p, s)
		}
		if s := do("GET", p, "wrong"); s != 401 {
			t.Errorf("GET %s with a wrong token: %d; want 401", p, s)
		}
		if s := do("GET", p, "s3cret"); s != 200 {
			t.Errorf("GET %s with the token: %d; want 200", p, s)
		}
	}
	// Pin sessions to a, drain it: they stay, new sessions go to b.
	var onA []string
	for len(onA) < 3 {
		if id, _, c := tg.get(t, "/", ""); id == "a" {
			onA = append(onA, c)
		}
	}
	if s := do("POST", "/admin/backends/a/drain", ""); s != 401 {
		t.Fatalf("drain without token: %d; want 401", s)
	}
	if s := do("POST", "/admin/backends/a/drain", "s3cret"); s != 200 {
		t.Fatalf("drain: %d; want 200", s)
	}
	if s := do("POST", "/admin/backends/nope/drain", "s3cret"); s != 404 {
		t.Fatalf("drain of an unknown backend: %d; want 404", s)
	}
	for range 20 {
		if id, _, _ := tg.get(t, "/", ""); id != "b" {
			t.Fatalf("new session went to %s while a is drained", id)
		}
	}
	for _, c := range onA {
		if id, _, _ := tg.get(t, "/", c); id != "a" {
			t.Fatalf("existing session moved to %s when a was drained", id)
		}
	}
}

func TestPublicListenerHasNoAdmin(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	for _, p := range []string{"/admin/backends", "/metrics", "/readyz"} {
		tg.get(t, p, "")
	}
	if a.hits.Load() != 3 {
		t.Fatalf("admin paths on the public listener: backend hits %d; want all 3 proxied", a.hits.Load())
	}
}

// Issue 23: with no admin token (the default), a cross-site form POST
// drained a backend and a DNS-rebound host name was served. Browsers are
// refused now; API clients are not.
func TestAdminRefusesBrowsers(t *testing.T) {
	a := newBackend(t, "a")
	for _, tc := range []struct {
		name, token string
		allowed     []string
		method      string
		header      map[string]string
		want        int
	}{
		{"curl drains", "", nil, "POST", nil, 200},
		{"same origin", "", nil, "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"cross-site fetch", "", nil, "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site Origin, old browser", "", nil, "POST", map[string]string{"Origin": "http://evil.example"}, 403},
		{"form without Origin", "", nil, "POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"text/plain without Origin", "", nil, "POST", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, 415},
		{"JSON body", "", nil, "POST", map[string]string{"Content-Type": "application/json"}, 200},
		{"rebound host", "", nil, "GET", map[string]string{"Host": "rebind.evil.example:9090"}, 403},
		{"rebound host posts", "", nil, "POST", map[string]string{"Host": "rebind.evil.example"}, 403},
		{"localhost", "", nil, "GET", map[string]string{"Host": "localhost:9090"}, 200},
		{"an IPv6 address", "", nil, "GET", map[string]string{"Host": "[::1]:9090"}, 200},
		{"an allowed name", "", []string{"latch.internal"}, "GET", map[string]string{"Host": "LATCH.internal:9090"}, 200},
		{"with a token any name", "s3cret", nil, "GET", map[string]string{"Host": "latch:9090", "Authorization": "Bearer s3cret"}, 200},
		{"with a token still no cross-site", "s3cret", nil, "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer s3cret"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := startGateway(t, func(c *config.Config) {
				c.Admin.Token, c.Admin.AllowedHosts = tc.token, tc.allowed
			}, a)
			path := "/admin/backends"
			if tc.method == "POST" {
				path = "/admin/backends/a/drain"
			}
			req, _ := http.NewRequest(tc.method, tg.admin+path, nil)
			for k, v := range tc.header {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := tg.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d; want %d", tc.method, path, resp.StatusCode, tc.want)
			}
			drained := tg.g.admin.Services(t.Context())[0].Backends[0].Drained
			if drained != (tc.method == "POST" && tc.want == 200) {
				t.Fatalf("backend drained: %t after a %d", drained, resp.StatusCode)
			}
		})
	}
}
