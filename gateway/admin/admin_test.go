package admin

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// fakeState is a State of fixed routes whose Drain and Reload answer as
// told and record their calls.
type fakeState struct {
	routes    []Route
	conflicts []string
	waiting   []string
	reloadErr error
	drained   map[string]bool // backend ids Drain knows, and their state
	reloads   int
}

func (f *fakeState) Services() []Service             { return []Service{{Name: "web"}} }
func (f *fakeState) Routes() ([]Route, []string)     { return f.routes, f.conflicts }
func (f *fakeState) Waiting() []string               { return f.waiting }
func (f *fakeState) PendingRestart() []string        { return nil }
func (f *fakeState) SessionTTL(string) time.Duration { return time.Minute }
func (f *fakeState) Reload() (any, error) {
	f.reloads++
	return map[string]int{"n": f.reloads}, f.reloadErr
}
func (f *fakeState) Drain(id string, drain bool) bool {
	if _, ok := f.drained[id]; !ok {
		return false
	}
	f.drained[id] = drain
	return true
}

func newAPI(t *testing.T, st State, token string) http.Handler {
	t.Helper()
	codec, err := session.NewCodec([][]byte{session.RandomSecret()})
	if err != nil {
		t.Fatal(err)
	}
	aff := session.NewAffinity(session.Options{Store: session.NewMemoryStore(100, nil), Codec: codec})
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	return New(Options{State: st, Affinity: aff, Metrics: reg, Sampler: NewSampler(reg, st, log),
		Config: config.Admin{Token: token}, StoreKind: "memory", BackendState: func(*policy.Backend) string { return "passing" },
		Logger: log}).Handler()
}

func do(t *testing.T, h http.Handler, method, path, token string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:9090"+path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Body)
	return w.Code, string(body)
}

// The API reads and changes the gateway only through State: routes and
// conflicts as State lists them, drain and undrain by id (404 for an id no
// service has), reload's three answers, readiness, and the token in front
// of all but /healthz and /readyz.
func TestAPIOverState(t *testing.T) {
	st := &fakeState{
		routes:    []Route{{Name: "web", PathPrefix: "/", Service: "web", Policy: []string{"round_robin"}, Sticky: true}},
		conflicts: []string{"tag route shop on /: the config has it"},
		waiting:   []string{"service web"},
		drained:   map[string]bool{"web-1": false},
	}
	h := newAPI(t, st, "s3cret")
	for _, c := range []struct {
		name, method, path, token string
		code                      int
		body                      string
	}{
		{"no token", "GET", "/admin/routes", "", 401, "admin token required"},
		{"routes", "GET", "/admin/routes", "s3cret", 200, `"path_prefix": "/"`},
		{"conflicts", "GET", "/admin/routes", "s3cret", 200, "the config has it"},
		{"drain", "POST", "/admin/backends/web-1/drain", "s3cret", 200, `"drained": true`},
		{"drain unknown", "POST", "/admin/backends/nope/drain", "s3cret", 404, "no backend with id nope"},
		{"not ready", "GET", "/readyz", "", 503, "waiting for the first answer about: service web"},
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"reload", "POST", "/admin/reload", "s3cret", 200, `"n": 1`},
	} {
		code, body := do(t, h, c.method, c.path, c.token)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s: %s %s = %d %q; want %d with %q", c.name, c.method, c.path, code, body, c.code, c.body)
		}
	}
	if !st.drained["web-1"] {
		t.Errorf("web-1 not drained through State")
	}
	if code, _ := do(t, h, "POST", "/admin/backends/web-1/undrain", "s3cret"); code != 200 || st.drained["web-1"] {
		t.Errorf("undrain: %d, drained %v; want 200, false", code, st.drained["web-1"])
	}
	st.reloadErr = ErrReloadUnavailable
	if code, body := do(t, h, "POST", "/admin/reload", "s3cret"); code != 501 || !strings.Contains(body, "not available") {
		t.Errorf("reload without a loader: %d %q; want 501", code, body)
	}
	st.reloadErr = errors.New("routes[0].service: required")
	if code, body := do(t, h, "POST", "/admin/reload", "s3cret"); code != 422 || !strings.Contains(body, "routes[0].service") {
		t.Errorf("refused reload: %d %q; want 422 naming the field", code, body)
	}
	st.waiting = nil
	if code, _ := do(t, h, "GET", "/readyz", ""); code != 200 {
		t.Errorf("readyz once ready: %d; want 200", code)
	}
}
