// Package acme obtains and renews latch's TLS certificates from an ACME CA
// (tls.acme: Let's Encrypt by default), with github.com/caddyserver/certmagic
// doing the ACME work: accounts, orders, challenges, renewal, OCSP stapling,
// and a lock in the shared storage so that replicas take turns.
//
// What the TLS listener needs of it is small:
//
//   - Manager.GetCertificate for its tls.Config (it also answers the
//     TLS-ALPN-01 challenge's handshakes), and NextProto ("acme-tls/1") in
//     the config's NextProtos;
//   - Manager.HTTPChallenge around the plain-HTTP listener's handler, which
//     answers /.well-known/acme-challenge/ (HTTP-01) and passes the rest on;
//   - Manager.Run once the listeners are bound, until latch stops.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/latchgw/latch/gateway/config"
)

// NextProto is the ALPN protocol of TLS-ALPN-01 challenges: the TLS
// listener's NextProtos must list it (after h2 and http/1.1), or the CA's
// validation handshake fails.
const NextProto = acmez.ACMETLS1Protocol

// ChallengePath is the path prefix of HTTP-01 challenges.
const ChallengePath = "/.well-known/acme-challenge/"

// Options build a Manager.
type Options struct {
	// ACME is the defaulted tls.acme section (ACME.Enabled).
	ACME config.ACME
	// Storage keeps accounts, keys and certificates. Nil: the directory
	// ACME.Storage names, or the default directory (DefaultDir).
	Storage certmagic.Storage
	// KnowsHost, with ACME.RouteHosts, reports whether a route names host
	// (lower case, no port); only such names get a certificate on demand.
	// It is called during TLS handshakes and must not block.
	KnowsHost func(host string) bool
	Logger    *slog.Logger
	// Metrics, when set, gets latch_acme_certificates_total.
	Metrics prometheus.Registerer
}

// Manager holds the certificates of tls.acme. Its methods are safe for
// concurrent use; GetCertificate and HTTPChallenge serve only once Run has
// started (until then handshakes fail and challenge paths pass through).
type Manager struct {
	acme      config.ACME
	storage   certmagic.Storage
	knowsHost func(string) bool
	roots     *x509.CertPool // nil: the system's
	log       *slog.Logger
	zlog      *zap.Logger
	results   *prometheus.CounterVec // result, renewal

	running atomic.Pointer[running]
}

// running is what Run builds: certmagic's config and its issuer.
type running struct {
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// DefaultDir is the storage directory when tls.acme.storage names none
// and latch has no Redis: $XDG_DATA_HOME/latch/acme, or
// ~/.local/share/latch/acme.
func DefaultDir() string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "latch", "acme")
}

// New checks o (the CA root file is read here) and returns a Manager that
// obtains nothing until Run.
func New(o Options) (*Manager, error) {
	if !o.ACME.Enabled() {
		return nil, errors.New("acme: tls.acme names no domain and route_hosts is off")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Manager{acme: o.ACME, storage: o.Storage, knowsHost: o.KnowsHost, log: o.Logger}
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_acme_certificates_total",
		Help: "Certificates obtained from the ACME CA or failed to be, by result (obtained, failed) and whether it was a renewal.",
	}, []string{"result", "renewal"})
	if o.Metrics != nil {
		if err := o.Metrics.Register(m.results); err != nil {
			return nil, fmt.Errorf("acme: %w", err)
		}
	}
	m.zlog = zap.New(newSlogCore(o.Logger.With("component", "acme")))
	if m.storage == nil {
		dir := o.ACME.Storage
		if dir == "" || dir == "redis" {
			dir = DefaultDir()
		}
		m.storage = &certmagic.FileStorage{Path: dir}
	}
	if o.ACME.CARoot != "" {
		pem, err := os.ReadFile(o.ACME.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root: %s holds no PEM certificate", o.ACME.CARoot)
		}
	}
	return m, nil
}

// Listeners say where latch answers the CA's challenges: HTTP is the
// plain-HTTP listener (HTTP-01), TLS the TLS listener (TLS-ALPN-01). A nil
// address turns that challenge off (latch never binds a port of its own
// for a challenge).
type Listeners struct {
	HTTP, TLS net.Addr
}

// Run obtains a certificate for each of tls.acme.domains (in the
// background: a CA that fails is retried with backoff, logged) and keeps
// every certificate renewed until ctx ends. The listeners in ls must be
// bound before Run is called.
func (m *Manager) Run(ctx context.Context, ls Listeners) error {
	if m.running.Load() != nil {
		return errors.New("acme: Run called twice")
	}
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           m.zlog,
	})
	defer cache.Stop()
	cfg = certmagic.New(cache, certmagic.Config{Storage: m.storage, Logger: m.zlog,
		OnEvent: m.count, ShouldEmitFunc: counted})
	if m.acme.RouteHosts {
		cfg.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
	}
	tmpl := certmagic.ACMEIssuer{
		CA: m.acme.CA, Email: m.acme.Email, Agreed: true, TrustedRoots: m.roots, Logger: m.zlog,
		DisableHTTPChallenge:    true,
		DisableTLSALPNChallenge: true,
	}
	// certmagic binds the challenge port itself unless something listens
	// there already: name latch's own listeners, which do. (It has one
	// ListenHost for both: listeners on different hosts name the TLS one's,
	// and the check that the HTTP port is taken still finds latch there.)
	challenges := m.acme.Challenges.Get()
	if slices.Contains(challenges, config.ChallengeHTTP01) {
		if host, port, ok := hostPort(ls.HTTP); ok {
			tmpl.DisableHTTPChallenge, tmpl.ListenHost, tmpl.AltHTTPPort = false, host, port
		} else {
			m.log.Warn("acme: http-01 is off: latch has no plain-HTTP listener to answer it")
		}
	}
	if slices.Contains(challenges, config.ChallengeTLSALPN01) {
		if host, port, ok := hostPort(ls.TLS); ok {
			tmpl.DisableTLSALPNChallenge, tmpl.ListenHost, tmpl.AltTLSALPNPort = false, host, port
		} else {
			m.log.Warn("acme: tls-alpn-01 is off: latch has no TLS listener to answer it")
		}
	}
	if tmpl.DisableHTTPChallenge && tmpl.DisableTLSALPNChallenge {
		return errors.New("acme: no challenge can be answered (tls.acme.challenges names no listener latch has)")
	}
	issuer := certmagic.NewACMEIssuer(cfg, tmpl)
	cfg.Issuers = []certmagic.Issuer{issuer}
	m.running.Store(&running{cfg: cfg, issuer: issuer})
	defer m.running.Store(nil)
	m.log.Info("acme: managing certificates", "domains", []string(m.acme.Domains), "route_hosts", m.acme.RouteHosts,
		"ca", m.acme.CA, "http-01", !tmpl.DisableHTTPChallenge, "tls-alpn-01", !tmpl.DisableTLSALPNChallenge)
	if len(m.acme.Domains) > 0 {
		if err := cfg.ManageAsync(ctx, m.acme.Domains); err != nil {
			return fmt.Errorf("acme: %w", err)
		}
	}
	<-ctx.Done()
	return nil
}

// counted reports whether certmagic's event is one count records (the
// others, one per handshake among them, are not even built).
func counted(event string) bool { return event == "cert_obtained" || event == "cert_failed" }

// count records an obtained or failed certificate.
func (m *Manager) count(_ context.Context, event string, data map[string]any) error {
	if !counted(event) {
		return nil
	}
	renewal, _ := data["renewal"].(bool)
	m.results.WithLabelValues(strings.TrimPrefix(event, "cert_"), strconv.FormatBool(renewal)).Inc()
	return nil
}

// hostPort splits a listener's address into what certmagic's issuer takes
// (an unspecified host is "": every interface).
func hostPort(a net.Addr) (string, int, bool) {
	if a == nil {
		return "", 0, false
	}
	host, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, port, true
}

// decide allows an on-demand certificate for a configured domain or a host
// some route names.
func (m *Manager) decide(_ context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if slices.ContainsFunc(m.acme.Domains, func(d string) bool { return strings.EqualFold(d, name) }) {
		return nil
	}
	if m.knowsHost != nil && m.knowsHost(name) {
		return nil
	}
	return fmt.Errorf("acme: no route names %q", name)
}

// errNotRunning fails handshakes before Run (and after it returned).
var errNotRunning = errors.New("acme: certificate manager not running")

// GetCertificate is the TLS listener's tls.Config.GetCertificate: the
// managed certificate for the client's server name (obtained during the
// handshake for a route's host with tls.acme.route_hosts), or the
// TLS-ALPN-01 challenge certificate when the CA validates. For a name it
// does not manage (or no name) it returns nil, nil, running or not: the
// listener's other certificates (tls.certificates) answer those.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	challenge := len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == NextProto
	if !challenge && !m.Manages(hello.ServerName) {
		return nil, nil
	}
	r := m.running.Load()
	if r == nil {
		return nil, errNotRunning
	}
	return r.cfg.GetCertificate(hello)
}

// Manages reports whether m has (or may obtain) a certificate for name.
func (m *Manager) Manages(name string) bool {
	return name != "" && m.decide(context.Background(), name) == nil
}

// HTTPChallenge answers the CA's HTTP-01 requests (ChallengePath) and
// hands every other request to next: the plain-HTTP listener's handler
// (a redirect to HTTPS) goes inside.
func (m *Manager) HTTPChallenge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ChallengePath) {
			if run := m.running.Load(); run != nil && run.issuer.HandleHTTPChallenge(w, r) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
