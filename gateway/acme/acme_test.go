package acme

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/latchgw/latch/gateway/config"
)

// TestMain fails the package's tests when one leaves a goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestManager(t *testing.T, a config.ACME, knows func(string) bool) *Manager {
	t.Helper()
	// Nothing here reaches a CA: a closed loopback port stands in.
	a.CA, a.Challenges = "https://127.0.0.1:1/dir", config.Set(config.List{config.ChallengeTLSALPN01})
	m, err := New(Options{ACME: a, Storage: &certmagic.FileStorage{Path: t.TempDir()}, KnowsHost: knows,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Certificates on demand go to configured domains and route hosts only.
func TestManages(t *testing.T) {
	routed := map[string]bool{"app.example.com": true}
	m := newTestManager(t, config.ACME{Domains: config.List{"Www.Example.com"}, RouteHosts: true},
		func(h string) bool { return routed[h] })
	for name, want := range map[string]bool{
		"www.example.com": true, "WWW.EXAMPLE.COM.": true, "app.example.com": true,
		"other.example.com": false, "": false,
	} {
		if got := m.Manages(name); got != want {
			t.Errorf("Manages(%q) = %v, want %v", name, got, want)
		}
	}
	domainsOnly := newTestManager(t, config.ACME{Domains: config.List{"www.example.com"}}, nil)
	if domainsOnly.Manages("app.example.com") {
		t.Errorf("without route_hosts, a route host must not be managed")
	}
}

// Before Run, handshakes for its names fail and challenge paths fall
// through to the wrapped handler (the redirect), never a panic; running or
// not, names it does not manage are left to the listener's other
// certificates.
func TestNotRunning(t *testing.T) {
	// route_hosts without domains: Run orders nothing.
	m := newTestManager(t, config.ACME{RouteHosts: true}, func(host string) bool { return host == "www.example.com" })
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "www.example.com"}); err == nil {
		t.Errorf("GetCertificate before Run: want an error")
	}
	// A name it does not manage is left to other certificates even before.
	if c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); c != nil || err != nil {
		t.Errorf("GetCertificate of an unmanaged name before Run: %v, %v; want nil, nil", c, err)
	}
	// Once running, a name it does not manage is left to other certificates.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, Listeners{TLS: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}) }()
	deadline := time.Now().Add(10 * time.Second)
	for m.running.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); c != nil || err != nil {
		t.Errorf("GetCertificate of an unmanaged name: %v, %v; want nil, nil", c, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h := m.HTTPChallenge(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, path := range []string{ChallengePath + "token", "/other"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://www.example.com"+path, nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("%s before Run: %d, want the wrapped handler's 418", path, rec.Code)
		}
	}
}

func TestNewErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]config.ACME{
		"missing ca_root": {Domains: config.List{"a.example.com"}, CARoot: filepath.Join(dir, "missing.pem")},
		"ca_root not PEM": {Domains: config.List{"a.example.com"}, CARoot: notPEM},
	} {
		if _, err := New(Options{ACME: a}); err == nil || !strings.Contains(err.Error(), "tls.acme.ca_root") {
			t.Errorf("%s: %v, want an error naming tls.acme.ca_root", name, err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Errorf("New without domains: want an error")
	}
}

// certmagic's zap lines reach slog with their level, message and fields.
func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	log := zap.New(newSlogCore(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	log.Named("obtain").With(zap.String("identifier", "a.example.com")).Info("obtaining certificate", zap.Int("attempt", 2))
	log.Debug("dropped below info")
	got := buf.String()
	for _, want := range []string{"level=INFO", `msg="obtaining certificate"`, "identifier=a.example.com", "logger=obtain", "attempt=2"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "dropped") {
		t.Errorf("a debug line passed an info logger: %q", got)
	}
}
