// Package tlsserve owns TLS on latch's public listener: the certificates
// of tls.certificates and their reload (Certs), the listener's tls.Config
// and its certificate chain (ACME's hook first, then Certs), ACME's glue
// (NewACME), the split of TLS connections between h1 and net/http's
// HTTP/2 server with the handshake's cap and timeout (SplitServer), HSTS,
// and the plain-HTTP listener that redirects to HTTPS (RedirectHandler).
//
// With server.implementation net/http, net/http serves the TLS listener
// whole (HTTP/1.1 and, by ALPN, HTTP/2: HTTP). With h1, SplitServer
// completes each handshake and hands the connection over by its ALPN
// protocol: h2 to net/http's HTTP/2 server, anything else to h1. Either
// way every request reaches the same handler (the gateway's), so HTTP/2
// requests get the same session, retry and breaker rules, and the same
// forwarding: the client's protocol does not choose the path to the
// backend (forward's fast path serves HTTP/2 clients too; only upgrades
// and routes with backend_protocol h2c or h2 take the ReverseProxy path).
package tlsserve

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// challengePrefix is the ACME HTTP-01 challenge path (RFC 8555 §8.3),
// which the redirect listener does not redirect.
const challengePrefix = "/.well-known/acme-challenge/"

// Config is the public listener's TLS config: tls.min_version (1.2 unless
// "1.3"), certificates from getCertificate, ALPN h2 and http/1.1 then
// nextProtos.
func Config(minVersion string, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), nextProtos []string) *tls.Config {
	min := uint16(tls.VersionTLS12)
	if minVersion == "1.3" {
		min = tls.VersionTLS13
	}
	return &tls.Config{
		GetCertificate: getCertificate,
		MinVersion:     min,
		NextProtos:     append([]string{"h2", "http/1.1"}, nextProtos...),
		// Cipher suites: Go's defaults. Session tickets (resumption) are on,
		// their keys rotated by crypto/tls.
	}
}

// Certificate is the public listener's tls.Config.GetCertificate: hook
// (Deps.GetCertificate; tls.acme: its domains, route hosts and
// challenges) first, when set, then certs (tls.certificates; nil: none).
func Certificate(hook func(*tls.ClientHelloInfo) (*tls.Certificate, error), certs *Certs) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hook != nil {
			if c, err := hook(hello); c != nil || err != nil {
				return c, err
			}
		}
		if certs == nil {
			return nil, fmt.Errorf("no certificate for %q: not in tls.acme.domains nor a route's host", hello.ServerName)
		}
		return certs.GetCertificate(hello)
	}
}

// HSTS is middleware setting Strict-Transport-Security, as h says, on
// responses over TLS.
func HSTS(h config.HSTS) func(http.Handler) http.Handler {
	v := "max-age=" + strconv.FormatInt(int64(h.MaxAge/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	value := []string{v}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil {
				// Shared by every response: the slice's capacity is 1, so an
				// append by anyone reallocates rather than writing into it.
				w.Header()["Strict-Transport-Security"] = value[:1:1]
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RedirectHandler is the plain-HTTP listener's (tls.redirect_listen):
// 308 to the same host, path and query over HTTPS on port (omitted when
// 443), except the ACME challenge path, which challenge serves (404 when
// nil).
func RedirectHandler(port string, challenge http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, challengePrefix) {
			if challenge == nil {
				http.NotFound(w, r)
				return
			}
			challenge.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "latch: no Host to redirect to", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 address
		}
		if port != "443" {
			host += ":" + port
		}
		w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// ListenerPort is the port redirects name: the public listener's.
func ListenerPort(public net.Listener) string {
	_, p, _ := net.SplitHostPort(public.Addr().String())
	return p
}
