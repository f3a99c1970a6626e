package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/metrics"
	"github.com/latchgw/latch/session"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle client connections' goroutines briefly.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// testBackend is an httptest server that says who it is and counts.
type testBackend struct {
	id   string
	srv  *httptest.Server
	hits atomic.Int64
	// status, when set, is answered instead of 200.
	status atomic.Int32
}

func newBackend(t *testing.T, id string) *testBackend {
	t.Helper()
	b := &testBackend{id: id}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // uploads too: a Go backend sends 100 Continue on reading
		w.Header().Set("X-Backend-Id", id)
		if s := b.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		fmt.Fprintf(w, "%s %s xff=%s xfh=%s xfp=%s conn=%s te=%s host=%s\n", id, r.URL.Path,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("Connection"), r.Header.Get("X-Hop"), r.Host)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *testBackend) backend() discovery.Backend {
	return discovery.Backend{ID: b.id, Service: "web", Addr: b.addr(), Weight: 1, Health: discovery.Passing}
}

type testGateway struct {
	g       *Gateway
	url     string
	admin   string
	metrics string // the metrics listener (metrics.listen)
	redir   string // the redirect listener (tls.redirect_listen), when set
	static  *discovery.Static
	client  *http.Client
}

const testSecret = "0123456789abcdef0123456789abcdef"

// startGatewayB is startGateway for benchmarks (access log on or off).
func startGatewayB(b *testing.B, access bool, backends ...*testBackend) *testGateway {
	return startGatewayTB(b, func(c *config.Config) { c.Log.Access = config.Set(access) }, backends...)
}

// startGateway runs a gateway over a static source with an in-memory store.
func startGateway(t *testing.T, mutate func(*config.Config), backends ...*testBackend) *testGateway {
	t.Helper()
	return startGatewayTB(t, mutate, backends...)
}

func startGatewayTB(t testing.TB, mutate func(*config.Config), backends ...*testBackend) *testGateway {
	t.Helper()
	var list []discovery.Backend
	for _, b := range backends {
		list = append(list, b.backend())
	}
	return startGatewayWith(t, mutate, nil, list)
}

// startGatewayWith is startGateway over any backend list; affinity nil
// means one over a memory store of 10,000 sessions.
func startGatewayWith(t testing.TB, mutate func(*config.Config), affinity *session.Affinity, list []discovery.Backend) *testGateway {
	t.Helper()
	return startGatewayFull(t, mutate, affinity, slog.New(slog.NewTextHandler(io.Discard, nil)), list)
}

// startGatewayLog is startGatewayWith logging to log.
func startGatewayLog(t testing.TB, mutate func(*config.Config), log *slog.Logger, list []discovery.Backend) *testGateway {
	t.Helper()
	return startGatewayFull(t, mutate, nil, log, list)
}

// withDeps, if any, adjust the gateway's Deps.
func startGatewayFull(t testing.TB, mutate func(*config.Config), affinity *session.Affinity, log *slog.Logger, list []discovery.Backend, withDeps ...func(*Deps)) *testGateway {
	t.Helper()
	cfg := config.Config{Routes: []config.Route{{Service: "web"}}, Consul: config.Consul{Disabled: true}}
	cfg.Routes[0].Backends = []string{"127.0.0.1:1"} // validated; the static source below is what serves
	cfg.Log.Access = config.Set(false)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Server.Implementation = os.Getenv("LATCH_TEST_SERVER") // make test runs the suite on both
	if mutate != nil {
		mutate(&cfg)
	}
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	static := discovery.NewStatic(nil)
	for _, r := range cfg.Routes {
		static.Set(r.Service, list)
	}
	codec := testCodec(t)
	series := metrics.New()
	if affinity == nil {
		// The session layer reports to the gateway's metrics, as assemble wires it.
		affinity = session.NewAffinity(session.Options{Store: session.NewMemoryStore(10000, nil), Codec: codec, Logger: log, Metrics: series})
	}
	deps := Deps{Logger: log, Source: static, Affinity: affinity, Metrics: series}
	for _, f := range withDeps {
		f(&deps)
	}
	g, err := New(cc, deps)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	met, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := Listeners{Public: pub, Admin: adm, Metrics: met}
	scheme := "http://"
	if cfg.TLS.Enabled() { // the test sets tg.client's roots
		scheme = "https://"
	}
	if cfg.TLS.RedirectListen != "" {
		if ls.Redirect, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.RunOn(ctx, ls) }()
	tg := &testGateway{g: g, url: scheme + pub.Addr().String(), admin: "http://" + adm.Addr().String(),
		metrics: "http://" + met.Addr().String(), static: static,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}}
	if ls.Redirect != nil {
		tg.redir = "http://" + ls.Redirect.Addr().String()
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		tg.client.CloseIdleConnections()
	})
	// A list of backends none of whose checks has answered is rightly not
	// ready (TestReadyWaitsForAFirstCheck); the test waits for what it needs.
	if !slices.ContainsFunc(list, func(b discovery.Backend) bool { return !b.Unchecked }) && len(list) > 0 {
		return tg
	}
	waitUntil(t, "gateway ready", g.Ready)
	return tg
}

func testCodec(t testing.TB) *session.Codec {
	t.Helper()
	codec, err := session.NewCodec([][]byte{[]byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	return codec
}

// firstRoute is g's first route (the config's first).
func firstRoute(g *Gateway) *affinity.Route {
	routes, _ := g.routes.All()
	return routes[0]
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get sends a GET with the given cookie header and returns the backend id,
// the status and latch's Set-Cookie value (if any).
func (tg *testGateway) get(t testing.TB, path, cookie string) (backend string, status int, setCookie string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tg.url+path, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "latch" {
			setCookie = "latch=" + c.Value
		}
	}
	return resp.Header.Get("X-Backend-Id"), resp.StatusCode, setCookie
}

func TestStickySession(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	tg := startGateway(t, nil, a, b, c)
	first, status, cookie := tg.get(t, "/", "")
	if status != 200 || cookie == "" {
		t.Fatalf("first request: status %d cookie %q; want 200 and a latch cookie", status, cookie)
	}
	for i := range 50 {
		got, status, set := tg.get(t, "/", cookie)
		if got != first || status != 200 {
			t.Fatalf("request %d with cookie went to %s (%d); want %s", i, got, status, first)
		}
		if set != "" {
			t.Fatalf("request %d: cookie rewritten to %q with the backend unchanged", i, set)
		}
	}
}

func TestNewSessionsSpread(t *testing.T) {
	backends := []*testBackend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	tg := startGateway(t, func(c *config.Config) { c.Defaults.Policy = config.Set(config.List{"round_robin"}) }, backends...)
	seen := map[string]int{}
	for range 300 {
		id, status, cookie := tg.get(t, "/", "")
		if status != 200 || cookie == "" {
			t.Fatalf("status %d cookie %q", status, cookie)
		}
		seen[id]++
	}
	for _, b := range backends {
		// Round robin over 300 new sessions: exactly 100 each.
		if seen[b.id] != 100 {
			t.Fatalf("new sessions per backend %v; want 100 each", seen)
		}
	}
}

func TestBadCookiesStartNewSessions(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	_, _, good := tg.get(t, "/", "")
	val := strings.TrimPrefix(good, "latch=")
	flipped := []byte(val)
	flipped[len(flipped)/2] ^= 1
	for name, cookie := range map[string]string{
		"garbage":   "latch=%%%not-base64%%%",
		"truncated": "latch=" + val[:len(val)/2],
		"forged":    "latch=" + string(flipped),
		"oversized": "latch=" + strings.Repeat("A", 4000),
		"empty":     "latch=",
		"unsigned":  "latch=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	} {
		t.Run(name, func(t *testing.T) {
			_, status, set := tg.get(t, "/", cookie)
			if status != 200 {
				t.Fatalf("status %d; want 200", status)
			}
			if set == "" || set == good {
				t.Fatalf("Set-Cookie %q; want a new session's cookie", set)
			}
		})
	}
}

// A backend that refuses connections costs no client error: the request
// goes to another backend and the session moves with it.
func TestRetryOnRefusedBackend(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, func(c *config.Config) { c.Defaults.Policy = config.Set(config.List{"round_robin"}) }, a, b)
	var cookies []string
	for range 10 {
		_, _, c := tg.get(t, "/", "")
		cookies = append(cookies, c)
	}
	a.srv.Close() // refuses connections from now on
	for i, c := range cookies {
		got, status, _ := tg.get(t, "/", c)
		if status != 200 || got != "b" {
			t.Fatalf("session %d after a died: %s %d; want b 200", i, got, status)
		}
	}
}

func TestNoBackend503(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	tg.static.Set("web", nil)
	waitUntil(t, "empty snapshot", func() bool {
		set := firstRoute(tg.g).Set()
		return set != nil && len(set.Backends) == 0
	})
	_, status, _ := tg.get(t, "/", "")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d; want 503", status)
	}
}

func TestUpstreamErrorIs502(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, func(c *config.Config) { c.Defaults.Retry.Attempts = config.Set(1) }, a)
	a.srv.Close()
	_, status, _ := tg.get(t, "/", "")
	if status != http.StatusBadGateway {
		t.Fatalf("status %d; want 502", status)
	}
}

// Client-sent forwarding headers are not trusted from unknown peers;
// hop-by-hop headers do not reach the backend.
func TestForwardedHeaders(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	req, _ := http.NewRequest(http.MethodGet, tg.url+"/p", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "secret")
	req.Host = "shop.example"
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := string(body)
	for _, want := range []string{"xff=127.0.0.1 ", "xfh=shop.example ", "xfp=http ", "te= ", "host=shop.example"} {
		if !strings.Contains(got, want) {
			t.Errorf("backend saw %q; want it to contain %q", got, want)
		}
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1"} }, a)
	req, _ := http.NewRequest(http.MethodGet, tg.url+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "xff=203.0.113.7, 127.0.0.1 ") || !strings.Contains(string(body), "xfp=https") {
		t.Fatalf("backend saw %q; want the trusted chain extended and https kept", body)
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.Contains(c, "; Secure") {
		t.Fatalf("cookie %q; want Secure behind a trusted proxy saying https", c)
	}
}

// latch is not an open proxy: an absolute-form URI for a host no route
// names is refused.
func TestAbsoluteURIRejected(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	resp := tg.raw(t, "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest || a.hits.Load() != 0 {
		t.Fatalf("status %d, backend hits %d; want 400 and none", resp.StatusCode, a.hits.Load())
	}
}

// Ambiguous framing (the stuff of request smuggling) never reaches a
// backend: Go's server refuses duplicate lengths and unknown codings. (With
// both Content-Length and chunked it follows RFC 9112 §6.3: chunked wins and
// the length is dropped; latch re-frames every request it forwards, so no
// backend connection can be desynced by it.)
func TestSmugglingRejected(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, nil, a)
	for name, req := range map[string]string{
		"two content lengths": "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
		"unknown coding":      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"obfuscated chunked":  "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
	} {
		before := a.hits.Load()
		if resp := tg.raw(t, req); resp.StatusCode < 400 || a.hits.Load() != before {
			t.Errorf("%s: status %d, backend hits +%d; want a refusal and none", name, resp.StatusCode, a.hits.Load()-before)
		}
	}
}

// raw writes a request byte for byte on a new connection and reads the
// response, for requests net/http's client refuses to send.
func (tg *testGateway) raw(t *testing.T, request string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
