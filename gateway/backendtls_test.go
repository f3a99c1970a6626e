package gateway

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// Routes with backend_tls reach their backends over TLS on both forwarding
// paths, verified against the CA file, naming the backend's host by SNI
// (or backend_tls.server_name); a backend whose certificate does not
// verify is a failed attempt (502), not a request sent in the clear.
func TestBackendTLS(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, _ := ca.issue(t, "localhost", "backend.test")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var snis []string
	var checks atomic.Int64
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == "latch-health-check" {
			checks.Add(1) // over TLS: the server speaks nothing else
		}
		w.Header().Set("X-Backend-Id", "tls")
		if r.TLS == nil {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		snis = append(snis, h.ServerName)
		mu.Unlock()
		return nil, nil
	}}
	backend.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes of the last case
	backend.StartTLS()
	t.Cleanup(backend.Close)
	port := backend.URL[strings.LastIndex(backend.URL, ":")+1:]
	list := []discovery.Backend{{ID: "tls", Service: "web", Addr: "localhost:" + port, Weight: 1, Health: discovery.Passing}}
	caFile := ca.caFile(t)

	for _, c := range []struct {
		name       string
		bt         config.BackendTLS
		wantStatus int
		wantSNI    string
	}{
		{"CA file, SNI the backend's host", config.BackendTLS{Enabled: config.Set(true), CAFile: config.Set(caFile)}, 200, "localhost"},
		{"server_name", config.BackendTLS{Enabled: config.Set(true), CAFile: config.Set(caFile), ServerName: config.Set("backend.test")}, 200, "backend.test"},
		{"system roots do not know the CA", config.BackendTLS{Enabled: config.Set(true)}, 502, "localhost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			handshakes := 0
			tg := startGatewayWith(t, func(cfg *config.Config) {
				cfg.Defaults.BackendTLS = c.bt
				cfg.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1000)
				cfg.Defaults.HealthCheck.Path = config.Set("/health")
				cfg.Defaults.HealthCheck.Interval = config.Set(100 * time.Millisecond)
				cfg.Defaults.HealthCheck.Timeout = config.Set(100 * time.Millisecond)
			}, nil, list)
			if c.wantStatus == 200 {
				checks.Store(0)
				waitUntil(t, "an active health check over TLS", func() bool { return checks.Load() > 0 })
			}
			for _, req := range []struct{ method, path, body string }{
				{"GET", "/fast", ""},        // the fast path
				{"POST", "/proxy", "x=1"},   // ReverseProxy's
				{"GET", "/fast", ""},        // a pooled TLS connection
				{"GET", "/proxy?a=b;c", ""}, // ReverseProxy's, pooled
			} {
				mu.Lock()
				snis = nil
				mu.Unlock()
				r, _ := http.NewRequest(req.method, tg.url+req.path, strings.NewReader(req.body))
				resp, err := tg.client.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.wantStatus {
					t.Fatalf("%s %s: %d %q; want %d", req.method, req.path, resp.StatusCode, body, c.wantStatus)
				}
				if c.wantStatus == 200 && string(body) != req.method+" "+strings.Split(req.path, "?")[0] {
					t.Fatalf("%s %s: body %q", req.method, req.path, body)
				}
				mu.Lock()
				handshakes += len(snis)
				for _, s := range snis {
					if s != c.wantSNI {
						t.Fatalf("%s %s: the backend was named %q by SNI; want %q", req.method, req.path, s, c.wantSNI)
					}
				}
				mu.Unlock()
			}
			if handshakes == 0 {
				t.Fatal("the backend saw no TLS handshake")
			}
		})
	}
}
