package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// acmeDeadline bounds each certificate's issuance: pebble on loopback
// validates at once (PEBBLE_VA_NOSLEEP), so this is slack for a loaded
// machine, not a figure.
const acmeDeadline = 90 * time.Second

// latch with tls.acme obtains a certificate from a real ACME server
// (pebble on loopback, validating for real), and a client that trusts
// pebble's root and dials the test domain to 127.0.0.1 gets that
// certificate from latch and a proxied answer from the backend, for each
// challenge type: HTTP-01 (answered on the plain-HTTP listener) with the
// certificates in a directory, TLS-ALPN-01 (on the TLS listener) with them
// in Redis, where a second replica finds the same certificate instead of
// ordering one. With route_hosts a route's host gets a certificate at its
// first handshake and a name no route names gets none.
func TestACMEIssuanceThroughLatch(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "backend says hi to "+r.Host)
	}))
	t.Cleanup(backend.Close)

	tlsPort, httpPort := harness.FreePort(t), harness.FreePort(t)
	pebble := harness.StartPebble(t, httpPort, tlsPort)
	roots := pebble.Roots(t)
	pub := "127.0.0.1:" + strconv.Itoa(tlsPort)
	plain := "127.0.0.1:" + strconv.Itoa(httpPort)

	acmeConfig := func(a config.ACME, hosts ...string) config.Config {
		a.Email, a.CA, a.CARoot = "ops@latch.test", pebble.Directory, pebble.CAFile
		cfg := config.Config{
			Consul: config.Consul{Disabled: true},
			Cookie: config.Cookie{Secrets: []string{harness.CookieSecret}},
			TLS:    config.TLS{ACME: a},
		}
		for _, h := range hosts {
			cfg.Routes = append(cfg.Routes, config.Route{Host: h, Service: "web", Backends: config.List{backend.Listener.Addr().String()}})
		}
		cfg.Log.Access = config.Set(false)
		return cfg
	}

	t.Run("http-01, directory storage", func(t *testing.T) {
		const domain = "http01.latch.test"
		l := harness.StartLatchOn(t, acmeConfig(config.ACME{
			Domains: config.List{domain}, Storage: t.TempDir(), Challenges: config.Set(config.List{config.ChallengeHTTP01}),
		}, domain), pub, plain)
		leaf := getThroughLatch(t, roots, domain, pub)
		t.Logf("%s: certificate from %q, serial %x, valid until %s", domain, leaf.Issuer.CommonName, leaf.SerialNumber, leaf.NotAfter.Format(time.DateOnly))

		// The plain-HTTP listener redirects everything else to HTTPS.
		noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, "http://"+plain+"/a/b?c=d", nil)
		req.Host = domain
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := "https://" + domain + ":" + strconv.Itoa(tlsPort) + "/a/b?c=d"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("plain HTTP: %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		if m := scrapeMetrics(t, l.AdminURL); !strings.Contains(m, `latch_acme_certificates_total{renewal="false",result="obtained"} 1`) {
			t.Errorf("metrics lack the obtained certificate:\n%s", grepLines(m, "latch_acme"))
		}
		l.Stop(t)
	})

	t.Run("tls-alpn-01, redis storage shared by replicas, route hosts", func(t *testing.T) {
		const domain, routed = "alpn.latch.test", "routed.latch.test"
		redis := harness.StartRedis(t)
		cfg := acmeConfig(config.ACME{
			Domains: config.List{domain}, RouteHosts: true, Challenges: config.Set(config.List{config.ChallengeTLSALPN01}),
		}, domain, routed)
		cfg.Redis.URL = redis.URL // storage defaults to redis with redis.url
		first := harness.StartLatchOn(t, cfg, pub, "")
		leaf := getThroughLatch(t, roots, domain, pub)
		t.Logf("%s: certificate from %q, serial %x", domain, leaf.Issuer.CommonName, leaf.SerialNumber)

		onDemand := getThroughLatch(t, roots, routed, pub)
		t.Logf("%s (route host, on demand): serial %x", routed, onDemand.SerialNumber)
		if _, err := dialTLS(roots, "unrouted.latch.test", pub); err == nil {
			t.Errorf("a name no route names got a certificate")
		}

		// A second replica on another port, sharing Redis, serves the
		// certificate the first one obtained: pebble cannot validate it
		// (its challenge port is the first's), so a new order would fail.
		first.Stop(t)
		second := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
		harness.StartLatchOn(t, cfg, second, "")
		again := getThroughLatch(t, roots, domain, second)
		if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("second replica serves serial %x, want the shared %x", again.SerialNumber, leaf.SerialNumber)
		}
	})
}

// dialTLS dials addr as a client reaching name would (name resolved to
// 127.0.0.1) and verifies the certificate against roots.
func dialTLS(roots *x509.CertPool, name, addr string) (*x509.Certificate, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: name}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// getThroughLatch polls until an HTTPS GET of name (resolved to addr)
// verifies against roots and the backend answers through latch, and
// returns the certificate latch presented.
func getThroughLatch(t *testing.T, roots *x509.CertPool, name, addr string) *x509.Certificate {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	port := portOf(t, addr)
	url := "https://" + name + ":" + port + "/hello"
	var (
		leaf    *x509.Certificate
		lastErr string
	)
	deadline := time.Now().Add(acmeDeadline)
	for leaf == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s through latch within %v; last: %s", name, acmeDeadline, lastErr)
		}
		resp, err := client.Get(url)
		if err != nil {
			lastErr = err.Error()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "backend says hi to "+name+":"+port {
			t.Fatalf("GET %s: %d %q, want 200 from the backend", url, resp.StatusCode, body)
		}
		leaf = resp.TLS.PeerCertificates[0]
		if len(resp.TLS.VerifiedChains) == 0 || !slices.Contains(leaf.DNSNames, name) {
			t.Fatalf("certificate for %s: names %v, %d verified chains", name, leaf.DNSNames, len(resp.TLS.VerifiedChains))
		}
		if !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble") {
			t.Errorf("certificate for %s issued by %q, not pebble", name, leaf.Issuer.CommonName)
		}
	}
	return leaf
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
