package gateway

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// KnowsHost reports whether a route of the moment (from the file or from
// Consul tags) names host: tls.acme.route_hosts obtains certificates for
// exactly those.
func (g *Gateway) KnowsHost(host string) bool { return g.table.Load().knowsHost(host) }

// acmeOnlyTLSListener is the public listener's TLS when its certificates
// come from tls.acme alone: HTTP/1.1, and the ACME TLS-ALPN-01 protocol,
// minimum TLS 1.2, Go's default cipher suites.
//
// It stands in for the TLS listener of tls.certificates (issue 16's first
// item), which is built on another branch: once that is merged, ACME plugs
// into its tls.Config (GetCertificate, NextProtos) and this goes.
func acmeOnlyTLSListener(l net.Listener, m *acme.Manager) net.Listener {
	return tls.NewListener(l, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := m.GetCertificate(hello)
			if c == nil && err == nil {
				err = fmt.Errorf("no certificate for %q: not in tls.acme.domains nor a route's host", hello.ServerName)
			}
			return c, err
		},
		NextProtos: []string{"http/1.1", acme.NextProto},
	})
}

// acmeOnlyRedirect answers the plain-HTTP listener: ACME's HTTP-01
// challenges, and a 308 to the same URL over HTTPS on the public
// listener's port for everything else. A stand-in, as acmeOnlyTLSListener.
func acmeOnlyRedirect(m *acme.Manager, httpsPort string) http.Handler {
	return m.HTTPChallenge(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	}))
}

// newACME builds tls.acme's certificate manager: its storage in Redis
// (rdb) or a directory, its on-demand decisions asked of the gateway g
// returns (built after the manager, before any handshake).
func newACME(cfg config.Config, rdb redis.UniversalClient, log *slog.Logger, metrics *Metrics, g func() *Gateway) (*acme.Manager, error) {
	a := cfg.TLS.ACME
	o := acme.Options{ACME: a, Logger: log, Metrics: metrics.reg, KnowsHost: func(host string) bool { return g().KnowsHost(host) }}
	where := a.Storage
	if a.Storage == "redis" {
		o.Storage = acme.BlobStorage(session.NewBlobs(rdb, "latch-acme"))
	} else if where == "" {
		where = acme.DefaultDir()
	}
	m, err := acme.New(o)
	if err != nil {
		return nil, err
	}
	log.Info("acme: certificates stored", "storage", where)
	return m, nil
}
