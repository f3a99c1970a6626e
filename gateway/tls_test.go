package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/tlsserve"
)

// The behaviour table over TLS, on both server implementations and both
// protocols: HTTP/2 requests (ReverseProxy's path) get the same session,
// retry and breaker rules as HTTP/1.1 ones, and the affinity cookie is
// Secure because the connection is TLS.
func TestTLSBehaviourTable(t *testing.T) {
	ca := newTestCA(t)
	for _, impl := range []string{"net/http", "h1"} {
		for _, h2 := range []bool{false, true} {
			proto := "HTTP/1.1"
			if h2 {
				proto = "HTTP/2.0"
			}
			t.Run(impl+" "+proto, func(t *testing.T) {
				get := func(t *testing.T, tg *testGateway, cookie string) (string, int, string) {
					t.Helper()
					req, _ := http.NewRequest(http.MethodGet, tg.url+"/", nil)
					if cookie != "" {
						req.Header.Set("Cookie", cookie)
					}
					resp, err := tg.client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					_, _ = io.Copy(io.Discard, resp.Body)
					if resp.Proto != proto {
						t.Fatalf("answered in %s; want %s", resp.Proto, proto)
					}
					set := ""
					for _, line := range resp.Header["Set-Cookie"] {
						if strings.HasPrefix(line, "latch=") {
							set = line
						}
					}
					return resp.Header.Get("X-Backend-Id"), resp.StatusCode, set
				}
				t.Run("sticky, Secure cookie", func(t *testing.T) {
					a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
					tg := startTLSGateway(t, ca, impl, h2, nil, a, b, c)
					first, status, set := get(t, tg, "")
					if status != 200 || !strings.Contains(set, "; Secure") {
						t.Fatalf("first request: %d, Set-Cookie %q; want 200 and a Secure cookie", status, set)
					}
					cookie, _, _ := strings.Cut(set, ";")
					for i := range 20 {
						if id, status, _ := get(t, tg, cookie); id != first || status != 200 {
							t.Fatalf("request %d: %s %d; want %s (sticky)", i, id, status, first)
						}
					}
				})
				t.Run("retry on a dead backend", func(t *testing.T) {
					a, b := newBackend(t, "a"), newBackend(t, "b")
					tg := startTLSGateway(t, ca, impl, h2, nil, a, b)
					var pinned string
					for pinned == "" {
						if id, _, set := get(t, tg, ""); id == "a" {
							pinned, _, _ = strings.Cut(set, ";")
						}
					}
					a.srv.Close() // refuses connections from now on
					id, status, set := get(t, tg, pinned)
					if id != "b" || status != 200 || set == "" {
						t.Fatalf("session on the dead backend: %s %d cookie %q; want 200 from b, re-pinned", id, status, set)
					}
					for i := range 10 {
						if id, status, _ := get(t, tg, ""); id != "b" || status != 200 {
							t.Fatalf("new session %d: %s %d; want 200 from b", i, id, status)
						}
					}
				})
				t.Run("breaker", func(t *testing.T) {
					a, b := newBackend(t, "a"), newBackend(t, "b")
					a.status.Store(502)
					tg := startTLSGateway(t, ca, impl, h2, func(c *config.Config) {
						c.Defaults.Policy = config.Set(config.List{"round_robin"})
						c.Defaults.Retry.OnStatus = config.Set([]int{}) // a's 502s reach the client
						c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](2)
						c.Defaults.Breaker.OpenTimeout = config.Set(time.Hour)
					}, a, b)
					codes := map[int]int{}
					for range 12 {
						_, status, _ := get(t, tg, "")
						codes[status]++
					}
					if a.hits.Load() != 2 || codes[502] != 2 || codes[200] != 10 {
						t.Fatalf("a saw %d requests, clients got %v; want 2 (then its breaker opened), 2 × 502 and 10 × 200",
							a.hits.Load(), codes)
					}
				})
			})
		}
	}
}

// Two certificates chosen by SNI (exact names and a wildcard), the first
// the default for clients without SNI or naming neither; min_version
// refuses older clients.
func TestTLSCertificatesBySNI(t *testing.T) {
	ca := newTestCA(t)
	one := ca.files(t, "one", "one.test", "127.0.0.1")
	two := ca.files(t, "two", "two.test", "*.two.test")
	for _, impl := range []string{"net/http", "h1"} {
		t.Run(impl, func(t *testing.T) {
			tg := startTLSGateway(t, ca, impl, false, func(c *config.Config) {
				c.TLS.Certificates = []config.Certificate{one, two}
				c.TLS.MinVersion = "1.3"
			}, newBackend(t, "a"))
			for sni, want := range map[string]string{"one.test": "one.test", "two.test": "two.test",
				"x.two.test": "two.test", "TWO.test": "two.test", "": "one.test", "other.test": "one.test"} {
				if got := leafOf(t, tg, sni).DNSNames[0]; got != want {
					t.Errorf("SNI %q got the certificate of %s; want %s", sni, got, want)
				}
			}
			// A verifying client through the whole stack, by name.
			tr := ca.client(true).Transport.(*http.Transport)
			tr.TLSClientConfig.ServerName = "two.test"
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(tg.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("GET as two.test: %d %s; want 200 over HTTP/2", resp.StatusCode, resp.Proto)
			}
			_, err = tls.Dial("tcp", tg.url[len("https://"):], &tls.Config{RootCAs: ca.pool, ServerName: "one.test",
				MaxVersion: tls.VersionTLS12})
			if err == nil {
				t.Fatal("a TLS 1.2 client was accepted with min_version 1.3")
			}
		})
	}
}

// curl speaks HTTP/2 to latch by ALPN (when curl is installed).
func TestTLSCurlHTTP2(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: the HTTP/2 case with curl is skipped (the Go client's runs in TestTLSBehaviourTable)")
	}
	ca := newTestCA(t)
	pair := ca.files(t, "one", "one.test")
	for _, impl := range []string{"net/http", "h1"} {
		t.Run(impl, func(t *testing.T) {
			tg := startTLSGateway(t, ca, impl, true, func(c *config.Config) {
				c.TLS.Certificates = []config.Certificate{pair}
			}, newBackend(t, "a"))
			port := tg.url[strings.LastIndex(tg.url, ":")+1:]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, curl, "-sS", "--http2", "--cacert", ca.caFile(t),
				"--resolve", "one.test:"+port+":127.0.0.1", "-o", "/dev/null",
				"-w", "%{http_version} %{http_code}", "https://one.test:"+port+"/x?y=1").CombinedOutput()
			if err != nil || string(out) != "2 200" {
				t.Fatalf("curl --http2: %q, %v; want \"2 200\"", out, err)
			}
		})
	}
}

// The redirect listener answers 308 to the same host, path and query over
// HTTPS on the public port, but leaves the ACME challenge path alone; HSTS
// goes out over TLS.
func TestTLSRedirectAndHSTS(t *testing.T) {
	ca := newTestCA(t)
	tg := startTLSGateway(t, ca, "", false, func(c *config.Config) {
		c.TLS.RedirectListen = ":0"
		c.TLS.HSTS = config.HSTS{MaxAge: 365 * 24 * time.Hour, IncludeSubdomains: true}
	}, newBackend(t, "a"))
	port := tg.url[strings.LastIndex(tg.url, ":")+1:]
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	for _, c := range []struct{ path, host, code, location string }{
		{"/cart/1?item=2&x=%2F", "shop.test", "308", "https://shop.test:" + port + "/cart/1?item=2&x=%2F"},
		{"/", "shop.test:80", "308", "https://shop.test:" + port + "/"},
		{"/.well-known/acme-challenge/tok", "shop.test", "404", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, tg.redir+c.path, nil)
		req.Host = c.host
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if fmt.Sprint(resp.StatusCode) != c.code || resp.Header.Get("Location") != c.location {
			t.Errorf("GET http://%s%s: %d %q; want %s %q", c.host, c.path, resp.StatusCode, resp.Header.Get("Location"), c.code, c.location)
		}
	}
	resp, err := tg.client.Get(tg.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
		t.Fatalf("Strict-Transport-Security %q; want max-age=31536000; includeSubDomains", got)
	}

	// The challenge hook, and a public listener on 443 (no port named).
	h := tlsserve.RedirectHandler("443", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "key-auth") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://shop.test/.well-known/acme-challenge/tok", nil))
	if rec.Code != 200 || rec.Body.String() != "key-auth" {
		t.Errorf("challenge: %d %q; want the hook's answer", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "http://[::1]:80/a?b", nil))
	if rec.Code != 308 || rec.Header().Get("Location") != "https://[::1]/a?b" {
		t.Errorf("redirect to 443: %d %q; want 308 https://[::1]/a?b", rec.Code, rec.Header().Get("Location"))
	}
}

// Over plain HTTP the cookie is not Secure (sticky.secure auto).
func TestCookieNotSecureOverPlainHTTP(t *testing.T) {
	tg := startGateway(t, nil, newBackend(t, "a"))
	resp, err := tg.client.Get(tg.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if set := resp.Header.Get("Set-Cookie"); set == "" || strings.Contains(set, "Secure") {
		t.Fatalf("Set-Cookie %q over plain HTTP; want a cookie without Secure", set)
	}
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
}
