package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// Certificate files replaced under load, five times: every new connection
// gets the new certificate soon after, connections opened before keep
// working, and no request fails.
func TestCertificateRotationUnderLoad(t *testing.T) {
	ca := newTestCA(t)
	pair := ca.files(t, "site", "site.test", "127.0.0.1")
	for _, impl := range []string{"net/http", "h1"} {
		t.Run(impl, func(t *testing.T) {
			tg := startTLSGateway(t, ca, impl, false, func(c *config.Config) {
				c.TLS.Certificates = []config.Certificate{pair}
				c.TLS.PollInterval = config.Set(20 * time.Millisecond)
			}, newBackend(t, "a"), newBackend(t, "b"))
			var sent, failed atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Bounded load: four clients, two keeping their connections,
			// two opening one per request (each sees the certificate of
			// the moment), HTTP/1.1 and HTTP/2.
			for i := range 4 {
				client := ca.client(i%2 == 0)
				client.Transport.(*http.Transport).DisableKeepAlives = i >= 2
				wg.Go(func() {
					defer client.CloseIdleConnections()
					for {
						select {
						case <-stop:
							return
						default:
						}
						sent.Add(1)
						resp, err := client.Get(tg.url + "/")
						if err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if err == nil && resp.StatusCode != 200 {
								err = errors.New(resp.Status)
							}
						}
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				})
			}
			for range 5 {
				// Requests on both sides of every rotation.
				mark := sent.Load()
				waitUntil(t, "requests under way", func() bool { return sent.Load() >= mark+5 })
				c, k, serial := ca.issue(t, "site.test", "127.0.0.1")
				writeFile(t, pair.CertFile, c)
				writeFile(t, pair.KeyFile, k)
				waitUntil(t, "the new certificate serving", func() bool {
					return leafOf(t, tg, "site.test").SerialNumber.Int64() == serial
				})
			}
			close(stop)
			wg.Wait()
			t.Logf("%s: %d requests during 5 rotations, %d failed", impl, sent.Load(), failed.Load())
			if failed.Load() != 0 {
				t.Fatalf("%d of %d requests failed during rotation; first: %v", failed.Load(), sent.Load(), firstErr.Load())
			}
			if got := seriesValue(t, tg.g, "latch_tls_certificate_reloads_total", map[string]string{"result": "ok"}); got < 5 {
				t.Fatalf("latch_tls_certificate_reloads_total{result=ok} = %v; want at least 5", got)
			}
		})
	}
}

// A bad new certificate is refused — logged, counted — and the one before
// keeps serving; ReloadCertificates says why. The expiry series follows
// the certificate that serves.
func TestBadCertificateRefused(t *testing.T) {
	ca := newTestCA(t)
	pair := ca.files(t, "site", "site.test", "127.0.0.1")
	other := ca.files(t, "other", "other.test")
	tg := startTLSGateway(t, ca, "", false, func(c *config.Config) {
		c.TLS.Certificates = []config.Certificate{pair}
		c.TLS.PollInterval = config.Set(20 * time.Millisecond)
	}, newBackend(t, "a"))
	before := leafOf(t, tg, "site.test")
	expiry := func() float64 {
		v, _ := tg.gauge(t, "latch_tls_certificate_expiry_seconds", map[string]string{"name": "site.test"})
		return v
	}
	if got := expiry(); got != float64(before.NotAfter.Unix()) {
		t.Fatalf("expiry series %v; want %d", got, before.NotAfter.Unix())
	}
	otherCert, _ := os.ReadFile(other.CertFile)
	for _, bad := range []struct {
		name      string
		cert, key []byte
	}{
		{"not PEM", []byte("garbage"), nil},
		{"a certificate for another key", otherCert, nil},
	} {
		errorsBefore := seriesValue(t, tg.g, "latch_tls_certificate_reloads_total", map[string]string{"result": "error"})
		writeFile(t, pair.CertFile, bad.cert)
		waitUntil(t, bad.name+" refused", func() bool {
			return seriesValue(t, tg.g, "latch_tls_certificate_reloads_total", map[string]string{"result": "error"}) > errorsBefore
		})
		if got := leafOf(t, tg, "site.test"); got.SerialNumber.Cmp(before.SerialNumber) != 0 {
			t.Fatalf("%s: serving serial %v; want the previous certificate's %v", bad.name, got.SerialNumber, before.SerialNumber)
		}
		resp, err := tg.client.Get(tg.url + "/")
		if err != nil {
			t.Fatalf("%s: a request after the refusal: %v", bad.name, err)
		}
		resp.Body.Close()
		if err := tg.g.ReloadCertificates(); err == nil || !strings.Contains(err.Error(), "tls.certificates[0]") {
			t.Fatalf("%s: ReloadCertificates = %v; want the pair's error", bad.name, err)
		}
	}
	// Good files again: taken, and the expiry series follows.
	c, k, serial := ca.issue(t, "site.test", "127.0.0.1")
	writeFile(t, pair.CertFile, c)
	writeFile(t, pair.KeyFile, k)
	if err := tg.g.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	now := leafOf(t, tg, "site.test")
	if now.SerialNumber.Int64() != serial || expiry() != float64(now.NotAfter.Unix()) {
		t.Fatalf("after a good reload: serial %v, expiry series %v; want %d and %d", now.SerialNumber, expiry(), serial, now.NotAfter.Unix())
	}
	// Replacing the list is all or nothing.
	if err := tg.g.ReloadCertificates(config.Certificate{CertFile: pair.CertFile, KeyFile: other.KeyFile}); err == nil {
		t.Fatal("a list with a mismatched pair was taken")
	}
	if err := tg.g.ReloadCertificates(other); err != nil {
		t.Fatal(err)
	}
	if got := leafOf(t, tg, "site.test").DNSNames[0]; got != "other.test" {
		t.Fatalf("after replacing the list: %s; want other.test (the only certificate)", got)
	}
}

// A certificate that does not load stops latch at start, naming the field.
func TestBadCertificateAtStart(t *testing.T) {
	ca := newTestCA(t)
	good := ca.files(t, "good", "good.test")
	cfg := config.Config{Routes: []config.Route{{Service: "web", Backends: config.List{"127.0.0.1:1"}}},
		Consul: config.Consul{Disabled: true}}
	cfg.TLS.Certificates = []config.Certificate{good, {CertFile: good.CertFile, KeyFile: good.CertFile}}
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	affinity := session.NewAffinity(session.Options{Store: session.NewMemoryStore(10, nil), Codec: testCodec(t)})
	_, err = New(cc, Deps{Source: discovery.NewStatic(nil), Affinity: affinity})
	if err == nil || !strings.Contains(err.Error(), "tls.certificates[1]") {
		t.Fatalf("New = %v; want an error naming tls.certificates[1]", err)
	}
}

// A configuration reload (SIGHUP, POST /admin/reload) swaps a changed
// certificate list whole — or refuses the reload, naming the pair — and
// re-reads an unchanged one; the rest of tls needs a restart.
func TestReloadCertificates(t *testing.T) {
	ca := newTestCA(t)
	one, two := ca.files(t, "one", "one.test"), ca.files(t, "two", "two.test")
	impl := os.Getenv("LATCH_TEST_SERVER")
	rl := startReloadable(t, func(c *config.Config) {
		if impl != "" {
			c.Server.Implementation = impl
		}
		c.TLS.Certificates = []config.Certificate{one}
	}, newBackend(t, "a"))
	rl.client = ca.client(false)
	serving := func() string { return leafOf(t, rl.testGateway, "").DNSNames[0] }
	if got := serving(); got != "one.test" {
		t.Fatalf("serving %s; want one.test", got)
	}
	code, res, body := rl.reload(t, func(c *config.Config) { c.TLS.Certificates = []config.Certificate{two, one} })
	if code != 200 || !slices.Contains(res.Applied, "tls.certificates") || serving() != "two.test" {
		t.Fatalf("reload to [two, one]: %d %s, serving %s; want two.test", code, body, serving())
	}
	code, _, body = rl.reload(t, func(c *config.Config) {
		c.TLS.Certificates = []config.Certificate{one, {CertFile: one.CertFile, KeyFile: two.KeyFile}}
	})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "tls.certificates[1]") || serving() != "two.test" {
		t.Fatalf("reload with a mismatched pair: %d %s, serving %s; want 422 naming tls.certificates[1], two.test serving", code, body, serving())
	}
	code, res, body = rl.reload(t, func(c *config.Config) {
		c.TLS.Certificates = []config.Certificate{two, one}
		c.TLS.MinVersion = "1.3"
	})
	if code != 200 || !slices.Equal(res.NeedsRestart, []string{"tls"}) || !slices.Contains(res.Applied, "tls.certificates (re-read)") {
		t.Fatalf("reload changing min_version: %d %s; want 200, needs restart [tls], certificates re-read", code, body)
	}
}
