package tlsserve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/gateway/config"
)

// Certs holds the public listener's certificates (tls.certificates)
// and chooses one per handshake by the client's SNI. The certificates are
// an immutable certSet swapped atomically: a handshake never waits for a
// reload, and a connection keeps the certificate it was given. A pair whose
// files changed is loaded again; one that fails to load (half written, a
// key that does not match, not PEM) is refused with a log line and
// latch_tls_certificate_reloads_total{result="error"}, and the pair loaded
// before keeps serving.
type Certs struct {
	log     *slog.Logger
	reloads *prometheus.CounterVec // result: ok, error
	expiry  *prometheus.GaugeVec   // name: unix time the certificate expires

	mu    sync.Mutex // serializes loads (the poll loop, ReloadCertificates)
	pairs []config.Certificate
	seen  []stamp // per pair: the files as last loaded (or last refused)
	next  []stamp // per pair: a change seen by the last poll, loaded once it holds still
	set   atomic.Pointer[certSet]
}

// certSet is one generation of certificates.
type certSet struct {
	certs  []*tls.Certificate          // per pair, in config order; [0] is the default
	byName map[string]*tls.Certificate // lower-case DNS names ("*.example.com" too) and IPs
}

// stamp is what a poll compares: both files' sizes and modification times.
type stamp struct {
	certSize, keySize int64
	certMod, keyMod   time.Time
}

func statPair(p config.Certificate) (stamp, error) {
	cs, err := os.Stat(p.CertFile)
	if err != nil {
		return stamp{}, err
	}
	ks, err := os.Stat(p.KeyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certSize: cs.Size(), keySize: ks.Size(), certMod: cs.ModTime(), keyMod: ks.ModTime()}, nil
}

// NewCerts loads every pair: any that fails is an error naming its
// field (latch does not start without its certificates). Its series
// (reloads, expiry) are registered with reg.
func NewCerts(pairs []config.Certificate, log *slog.Logger, reg prometheus.Registerer) (*Certs, error) {
	s := &Certs{log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_tls_certificate_reloads_total",
			Help: "Certificate pairs re-read after their files changed (or on ReloadCertificates), by result: ok, or error (refused: the previous certificate keeps serving).",
		}, []string{"result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "latch_tls_certificate_expiry_seconds",
			Help: "Unix time at which each serving certificate expires, by its first name.",
		}, []string{"name"}),
	}
	if err := s.replace(pairs); err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{s.reloads, s.expiry} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering TLS metrics: %w", err)
		}
	}
	return s, nil
}

// replace loads pairs as the new list, all or nothing.
func (s *Certs) replace(pairs []config.Certificate) error {
	certs := make([]*tls.Certificate, len(pairs))
	seen := make([]stamp, len(pairs))
	var errs []error
	for i, p := range pairs {
		st, err := statPair(p)
		if err == nil {
			certs[i], err = loadPair(p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tls.certificates[%d]: %w", i, err))
		}
		seen[i] = st
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pairs, s.seen, s.next = pairs, seen, make([]stamp, len(pairs))
	s.publish(certs)
	return nil
}

// loadPair reads and checks one pair: a certificate that matches its key,
// with its leaf parsed (names, expiry).
func loadPair(p config.Certificate) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// publish makes certs the serving set and sets their expiry series.
// Called with s.mu held.
func (s *Certs) publish(certs []*tls.Certificate) {
	set := &certSet{certs: certs, byName: map[string]*tls.Certificate{}}
	s.expiry.Reset()
	// Earlier pairs win a name both hold, as they win the default.
	for i := len(certs) - 1; i >= 0; i-- {
		for _, n := range certNames(certs[i].Leaf) {
			set.byName[n] = certs[i]
		}
	}
	for _, c := range certs {
		s.expiry.WithLabelValues(certName(c.Leaf)).Set(float64(c.Leaf.NotAfter.Unix()))
	}
	s.set.Store(set)
}

// certNames are the names SNI may ask for a certificate by, lower case.
func certNames(leaf *x509.Certificate) []string {
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses)+1)
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, strings.ToLower(leaf.Subject.CommonName))
	}
	return names
}

// certName labels a certificate in metrics: its first name.
func certName(leaf *x509.Certificate) string {
	if n := certNames(leaf); len(n) > 0 {
		return n[0]
	}
	return leaf.SerialNumber.String()
}

// GetCertificate is tls.Config.GetCertificate: the certificate holding the
// SNI name exactly, else by a wildcard of its first label, else the
// default (the first pair).
func (s *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.set.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		// No SNI (clients dialling an address): an IP certificate for the
		// address they reached, else the default.
		if hello.Conn != nil {
			if host, _, err := net.SplitHostPort(hello.Conn.LocalAddr().String()); err == nil {
				if c := set.byName[host]; c != nil {
					return c, nil
				}
			}
		}
		return set.certs[0], nil
	}
	if c := set.byName[name]; c != nil {
		return c, nil
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c := set.byName["*."+rest]; c != nil {
			return c, nil
		}
	}
	return set.certs[0], nil
}

// reload re-reads the pairs whose files changed since they were last read
// and have not changed since the previous poll (every pair when force is
// set). Waiting for the files to hold still keeps a renewal that writes the
// certificate and the key one after the other from being refused half
// done. A pair that fails keeps its certificate. It returns the pairs'
// errors, joined.
func (s *Certs) reload(force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.set.Load()
	var certs []*tls.Certificate // copied on the first change
	var errs []error
	for i, p := range s.pairs {
		st, err := statPair(p) // zero when a file is missing
		if !force {
			if st == s.seen[i] {
				continue
			}
			if st != s.next[i] {
				s.next[i] = st // changed since the last poll: wait for it to settle
				continue
			}
		}
		if err == nil {
			var c *tls.Certificate
			if c, err = loadPair(p); err == nil {
				if certs == nil {
					certs = append([]*tls.Certificate(nil), cur.certs...)
				}
				certs[i] = c
			}
		}
		s.seen[i] = st // a refused pair is tried again when its files change again
		if err != nil {
			s.reloads.WithLabelValues("error").Inc()
			s.log.Error("certificate refused: the previous one keeps serving", "field", fmt.Sprintf("tls.certificates[%d]", i),
				"cert_file", p.CertFile, "key_file", p.KeyFile, "err", err)
			errs = append(errs, fmt.Errorf("tls.certificates[%d]: %w", i, err))
			continue
		}
		s.reloads.WithLabelValues("ok").Inc()
		s.log.Info("certificate loaded", "cert_file", p.CertFile, "name", certName(certs[i].Leaf),
			"expires", certs[i].Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if certs != nil {
		s.publish(certs)
	}
	return errors.Join(errs...)
}

// Run polls the files every interval (tls.poll_interval; 0: never) until
// ctx ends, loading the pairs that changed as reload does.
func (s *Certs) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.reload(false) // logged and counted
		}
	}
}

// Reload re-reads every pair now (SIGHUP, POST /admin/reload). A pair
// that fails to load is refused — logged, counted, returned — and the
// certificate it would replace keeps serving; the others are replaced.
// With pairs given, they become the list instead, all or nothing: if any
// fails, nothing changes.
func (s *Certs) Reload(pairs ...config.Certificate) error {
	if len(pairs) > 0 {
		if err := s.replace(pairs); err != nil {
			s.reloads.WithLabelValues("error").Inc()
			return err
		}
		s.reloads.WithLabelValues("ok").Inc()
		return nil
	}
	return s.reload(true)
}
