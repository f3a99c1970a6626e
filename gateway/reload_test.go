package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/internal/recorder"
)

// reloadable is a gateway whose loader returns the config last given to
// set (or its error).
type reloadable struct {
	*testGateway
	mu   sync.Mutex
	next func(*config.Config) // mutates the base config; nil: the base
	fail error
	base func(*config.Config)
}

func startReloadable(t *testing.T, base func(*config.Config), backends ...*testBackend) *reloadable {
	t.Helper()
	var list []discovery.Backend
	for _, b := range backends {
		list = append(list, b.backend())
	}
	return startReloadableWith(t, base, list)
}

// startReloadableWith is startReloadable over any backend list.
func startReloadableWith(t *testing.T, base func(*config.Config), list []discovery.Backend) *reloadable {
	t.Helper()
	return startReloadableLog(t, base, slog.New(slog.NewTextHandler(io.Discard, nil)), list)
}

// startReloadableLog is startReloadableWith logging to log.
func startReloadableLog(t *testing.T, base func(*config.Config), log *slog.Logger, list []discovery.Backend) *reloadable {
	t.Helper()
	rl := &reloadable{base: base}
	rl.testGateway = startGatewayLog(t, base, log, list)
	rl.g.SetConfigLoader(func() (*config.Compiled, error) {
		rl.mu.Lock()
		defer rl.mu.Unlock()
		if rl.fail != nil {
			return nil, rl.fail
		}
		cfg := config.Config{Routes: []config.Route{{Service: "web"}}, Consul: config.Consul{Disabled: true}}
		cfg.Routes[0].Backends = []string{"127.0.0.1:1"}
		cfg.Log.Access = config.Set(false)
		cfg.Admin.Listen = "127.0.0.1:0"
		cfg.Server.Implementation = rl.testGateway.g.c.Server.Implementation
		rl.base(&cfg)
		if rl.next != nil {
			rl.next(&cfg)
		}
		return cfg.Compile()
	})
	return rl
}

// service is the running service name (nil: none).
func (rl *reloadable) service(t *testing.T, name string) *affinity.Service {
	return rl.g.routes.Service(name)
}

// reload applies mutate over the base config through the admin API.
func (rl *reloadable) reload(t *testing.T, mutate func(*config.Config)) (int, ReloadResult, string) {
	t.Helper()
	rl.mu.Lock()
	rl.next, rl.fail = mutate, nil
	rl.mu.Unlock()
	return rl.post(t)
}

func (rl *reloadable) post(t *testing.T) (int, ReloadResult, string) {
	t.Helper()
	resp, err := rl.client.Post(rl.admin+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res ReloadResult
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	_ = json.Unmarshal(raw, &res)
	return resp.StatusCode, res, string(raw)
}

// A reload swaps routes, retry settings and cookie secrets; sessions,
// drains and latency survive it; a refused configuration changes nothing
// and is counted; what needs a restart is reported and the rest applies.
func TestReload(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	base := func(cfg *config.Config) {
		cfg.Cookie.Secrets = config.List{testSecret}
		cfg.Routes[0].Backends = []string{a.addr(), b.addr()}
	}
	rl := startReloadable(t, base, a, b)
	reloads := func(result string) float64 {
		return seriesValue(t, rl.g, "latch_config_reload_total", map[string]string{"result": result})
	}

	// Sessions on both backends; a is drained (state a reload must keep).
	cookies := map[string]string{}
	for len(cookies) < 2 {
		id, _, ck := rl.get(t, "/", "")
		cookies[id] = ck
	}
	svc := rl.service(t, "web")
	if !svc.Drain("a", true) {
		t.Fatal("no backend a")
	}
	if svc.Set().Lookup("b").Latency() == 0 {
		t.Fatal("b has no latency sample before the reload")
	}

	const rotated = "fedcba9876543210fedcba9876543210"
	code, res, body := rl.reload(t, func(cfg *config.Config) {
		cfg.Cookie.Secrets = config.List{rotated, testSecret} // the new one signs, the old one still verifies
		cfg.Routes[0].Retry.Attempts = config.Set(1)
		cfg.Routes = append(cfg.Routes, config.Route{Service: "api", PathPrefix: "/api", Backends: config.List{c.addr()}})
		cfg.Listen = "127.0.0.1:1"                             // needs a restart
		cfg.TLS.ACME.Domains = config.List{"shop.example.com"} // and so does turning ACME on
		cfg.Tracing.Sampler = "always_off"                     // and tracing
	})
	if code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	for _, want := range []string{"cookie.secrets", "routes", "backends"} {
		if !slices.Contains(res.Applied, want) {
			t.Errorf("applied %q; want %q in it", res.Applied, want)
		}
	}
	if !slices.Equal(res.NeedsRestart, []string{"listen", "tls.acme", "tracing"}) {
		t.Errorf("needs restart %q; want [listen tls.acme tracing]", res.NeedsRestart)
	}
	waitUntil(t, "the new route serves", func() bool { id, _, _ := rl.get(t, "/api/x", ""); return id == "c" })
	// Issue 23: a cookie signed with the old secret kept its backend but was
	// never reissued, so the rotation never finished. Now it is reissued
	// under the new secret, once, and counted.
	for id, ck := range cookies {
		got, _, set := rl.get(t, "/", ck)
		if got != id {
			t.Errorf("session on %s went to %s after the reload", id, got)
		}
		if _, ok := testCodec(t).Decode(strings.TrimPrefix(set, "latch=")); set == "" || ok {
			t.Errorf("old-secret cookie of %s answered with Set-Cookie %q; want it reissued under the new secret", id, set)
		}
		if again, _, set2 := rl.get(t, "/", set); again != id || set2 != "" {
			t.Errorf("reissued cookie of %s: backend %s, Set-Cookie %q; want %s and none", id, again, set2, id)
		}
	}
	if n := seriesValue(t, rl.g, "latch_cookie_reissued_total", nil); n != float64(len(cookies)) {
		t.Errorf("latch_cookie_reissued_total %v; want %d", n, len(cookies))
	}
	if rl.service(t, "web") != svc {
		t.Fatal("service web was rebuilt by the reload")
	}
	if !svc.Set().Lookup("a").Drained() {
		t.Error("a's drain was lost in the reload")
	}
	if svc.Set().Lookup("b").Latency() == 0 {
		t.Error("b's latency was lost in the reload")
	}
	if n := rl.g.routes.Table().Match("", "/").Spec().Attempts(); n != 1 {
		t.Errorf("retry.attempts %d after the reload; want 1", n)
	}
	// A new session's cookie is signed with the rotated secret.
	_, _, fresh := rl.get(t, "/", "")
	if _, ok := testCodec(t).Decode(strings.TrimPrefix(fresh, "latch=")); ok {
		t.Error("a new cookie still verifies with the old secret alone: not signed with the new one")
	}
	if reloads("ok") != 1 || reloads("error") != 0 {
		t.Fatalf("reloads ok=%v error=%v; want 1, 0", reloads("ok"), reloads("error"))
	}

	// A refused configuration changes nothing.
	code, _, body = rl.reload(t, func(cfg *config.Config) {
		cfg.Routes[0].Breaker.FailureRatio = config.Set(2.0)
	})
	if code != 422 || !strings.Contains(body, "routes[0].breaker: failure_ratio") {
		t.Fatalf("invalid reload: %d %s; want 422 naming routes[0].breaker: failure_ratio", code, body)
	}
	rl.mu.Lock()
	rl.fail = errors.New("config: open /etc/latch.yaml: no such file")
	rl.mu.Unlock()
	if code, _, _ := rl.post(t); code != 422 {
		t.Fatalf("unreadable config: %d; want 422", code)
	}
	if reloads("error") != 2 {
		t.Fatalf("reload errors %v; want 2", reloads("error"))
	}
	if id, _, _ := rl.get(t, "/api/x", ""); id != "c" {
		t.Fatalf("/api after refused reloads: %q; want c (the last good config)", id)
	}

	// Back to the base: /api is gone, its service stopped; breaker
	// settings changed, so web's breakers are new.
	code, res, body = rl.reload(t, func(cfg *config.Config) {
		cfg.Routes[0].Breaker.ConsecutiveFailures = config.Set(uint32(2))
	})
	if code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if _, status, _ := rl.get(t, "/api/x", ""); status != 200 {
		// "/" still matches /api/x: it goes to web now.
		t.Fatalf("/api/x after removing its route: %d", status)
	}
	if id, _, _ := rl.get(t, "/api/x", ""); id == "c" {
		t.Fatal("/api/x still reaches c after its route was removed")
	}
	if rl.service(t, "api") != nil {
		t.Error("service api still watched with no route")
	}
	if !slices.ContainsFunc(res.Applied, func(s string) bool { return strings.Contains(s, "breaker settings") }) {
		t.Errorf("applied %q; want the breaker settings", res.Applied)
	}
	if !svc.Set().Lookup("a").Drained() {
		t.Error("a's drain was lost when the breakers were replaced")
	}
	if seriesValue(t, rl.g, "latch_config_last_reload_success_timestamp_seconds", nil) <= 0 {
		t.Error("last reload timestamp not set")
	}
}

// Without a loader, reload answers 501 and the token guards it.
func TestReloadNeedsLoaderAndToken(t *testing.T) {
	tg := startGateway(t, func(c *config.Config) { c.Admin.Token = "s3cret" }, newBackend(t, "a"))
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"s3cret", 501}} {
		req, _ := http.NewRequest(http.MethodPost, tg.admin+"/admin/reload", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q: %d; want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
}

// A change only a restart applies stays reported until the process
// restarts: issue 29's second reload of the same file answered
// "needs_restart": [] because it compared with the file read last, not
// with what runs. Each reload answers it, the log warns of it, the status
// data lists it and latch_config_restart_pending has it; a file changed
// back to what runs clears it.
func TestReloadPendingRestartPersists(t *testing.T) {
	a := newBackend(t, "a")
	base := func(cfg *config.Config) {
		cfg.Cookie.Secrets = config.List{testSecret}
		cfg.Routes[0].Backends = []string{a.addr()}
	}
	logs := &recorder.Writes{}
	rl := startReloadableLog(t, base, slog.New(slog.NewTextHandler(logs, nil)), []discovery.Backend{a.backend()})
	idle := rl.g.c.Server.IdleTimeout.Get()
	changed := func(cfg *config.Config) { cfg.Server.IdleTimeout = config.Set(idle + time.Minute) }
	status := func() []string {
		t.Helper()
		resp, err := rl.client.Get(rl.admin + "/admin/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			NeedsRestart []string `json:"needs_restart"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.NeedsRestart
	}
	warnings := func() int {
		n := 0
		for _, w := range logs.All() {
			if strings.Contains(w, "need a restart") && strings.Contains(w, "fields=[server]") {
				n++
			}
		}
		return n
	}

	for i := 1; i <= 3; i++ {
		code, res, body := rl.reload(t, changed)
		if code != 200 || !slices.Equal(res.NeedsRestart, []string{"server"}) {
			t.Fatalf("reload %d of the same file: %d %s; want needs_restart [server]", i, code, body)
		}
		if got := status(); !slices.Equal(got, []string{"server"}) {
			t.Errorf("after reload %d: status needs_restart %q; want [server]", i, got)
		}
		if v := seriesValue(t, rl.g, "latch_config_restart_pending", map[string]string{"section": "server"}); v != 1 {
			t.Errorf("after reload %d: latch_config_restart_pending{section=server} %v; want 1", i, v)
		}
		if n := warnings(); n != i {
			t.Errorf("after reload %d: %d warnings naming server; want %d", i, n, i)
		}
	}
	if got := rl.g.c.Server.IdleTimeout.Get(); got != idle {
		t.Fatalf("the running idle_timeout became %v: a reload applied it", got)
	}

	// The file says what runs again: nothing is pending.
	code, res, body := rl.reload(t, nil)
	if code != 200 || len(res.NeedsRestart) != 0 {
		t.Fatalf("reload back to the running config: %d %s; want needs_restart []", code, body)
	}
	if got := status(); got == nil || len(got) != 0 {
		t.Errorf("status needs_restart %q; want []", got)
	}
	if v := seriesValue(t, rl.g, "latch_config_restart_pending", map[string]string{"section": "server"}); v != -1 {
		t.Errorf("latch_config_restart_pending{section=server} %v; want no such series", v)
	}
}
