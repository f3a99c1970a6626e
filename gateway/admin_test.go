package gateway

import (
	"net/http"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

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
