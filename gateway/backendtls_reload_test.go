package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// Issue 22: backend TLS pools were keyed by the *tls.Config, which every
// reload compiles anew: a reload that changed nothing made latch handshake
// again with every backend, and the old pool, with its idle connections,
// was never closed. A reload that keeps backend_tls keeps the connections;
// one that changes it handshakes again and closes the old pool's idle
// connection (not at the idle timeout: it is an hour here).
func TestBackendTLSPoolsAcrossReload(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	certPEM, keyPEM, _ := ca.issue(t, "localhost", "backend.test")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := ca.caFile(t)
	copied := filepath.Join(ca.dir, "copy.pem")
	writeFile(t, copied, ca.PEM())
	both := filepath.Join(ca.dir, "both.pem")
	writeFile(t, both, append(ca.PEM(), other.PEM()...))

	for _, c := range []struct {
		name string
		// reload changes the base backend_tls (nil: leaves it alone).
		reload     func(*config.BackendTLS)
		handshakes int64 // the backend saw over both requests
		oldClosed  bool  // the first connection is closed after the reload
	}{
		{name: "backend_tls unchanged", handshakes: 1},
		{name: "the same CA under another file name", reload: func(bt *config.BackendTLS) { bt.CAFile = config.Set(copied) }, handshakes: 1},
		{name: "server_name changed", reload: func(bt *config.BackendTLS) { bt.ServerName = config.Set("backend.test") }, handshakes: 2, oldClosed: true},
		{name: "CA file contents changed", reload: func(bt *config.BackendTLS) { bt.CAFile = config.Set(both) }, handshakes: 2, oldClosed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hellos, closed atomic.Int64
			backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Backend-Id", "tls")
				io.WriteString(w, "ok")
			}))
			backend.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				hellos.Add(1) // one per connection latch opens
				return nil, nil
			}}
			backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateClosed {
					closed.Add(1)
				}
			}
			backend.StartTLS()
			t.Cleanup(backend.Close)
			addr := "localhost:" + backend.URL[strings.LastIndex(backend.URL, ":")+1:]
			rl := startReloadableWith(t, func(cfg *config.Config) {
				cfg.Routes[0].Backends = config.List{addr}
				cfg.Defaults.BackendTLS = config.BackendTLS{Enabled: config.Set(true), CAFile: config.Set(caFile)}
				cfg.Transport.IdleConnTimeout = config.Set(time.Hour) // only a retired pool closes it
			}, []discovery.Backend{{ID: "tls", Service: "web", Addr: addr, Weight: 1, Health: discovery.Passing}})

			// The answer reaches the client once the handler returned, by
			// then the backend connection is back in its pool (small body,
			// flushed at the end).
			get := func(when string) {
				t.Helper()
				id, status, _ := rl.get(t, "/", "")
				if status != 200 || id != "tls" {
					t.Fatalf("%s: status %d from %q; want 200 from the TLS backend", when, status, id)
				}
			}
			get("before the reload")
			if n := hellos.Load(); n != 1 {
				t.Fatalf("%d handshakes for the first request; want 1", n)
			}
			code, _, body := rl.reload(t, func(cfg *config.Config) {
				if c.reload != nil {
					c.reload(&cfg.Defaults.BackendTLS)
				}
			})
			if code != 200 {
				t.Fatalf("reload: %d %s", code, body)
			}
			get("after the reload")
			if n := hellos.Load(); n != c.handshakes {
				t.Errorf("%d handshakes over two requests around the reload; want %d", n, c.handshakes)
			}
			if c.oldClosed {
				waitUntil(t, "the retired pool's idle connection closed", func() bool { return closed.Load() == 1 })
			} else if n := closed.Load(); n != 0 {
				t.Errorf("%d backend connections closed; want none", n)
			}
		})
	}
}
