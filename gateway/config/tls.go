package config

import "time"

// The public listener's TLS: certificate files, HSTS and ACME.

// TLS is TLS on the public listener. With certificates, the listener
// speaks only TLS: HTTP/1.1 and, by ALPN, HTTP/2.
type TLS struct {
	// Certificates are PEM certificate (chain) and key file pairs. The
	// client's SNI picks the certificate whose names match it (exactly,
	// else by a wildcard); the first is the default, for clients without
	// SNI or naming none of them. The files are re-read when they change
	// (see PollInterval); a pair that fails to load keeps the one serving.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the oldest protocol accepted: "1.2" (default) or "1.3".
	// Cipher suites are Go's defaults.
	MinVersion string `yaml:"min_version"`
	// PollInterval is how often the certificate files are checked for a
	// change (size or modification time; default 2s; negative: never —
	// then only Gateway.ReloadCertificates re-reads them).
	PollInterval Opt[time.Duration] `yaml:"poll_interval"`
	// RedirectListen, when set, is a plain-HTTP listener (e.g. ":80")
	// answering every request with a 308 to the same path and query over
	// HTTPS on the public listener's port, except the ACME HTTP-01
	// challenge path (/.well-known/acme-challenge/).
	RedirectListen string `yaml:"redirect_listen"`
	// HSTS sends Strict-Transport-Security on responses over TLS when its
	// MaxAge is set.
	HSTS HSTS `yaml:"hsts"`
	// ACME obtains and renews certificates automatically (default off);
	// tls.certificates still answer the names it does not manage.
	ACME ACME `yaml:"acme"`
}

// Certificate is one certificate and its private key, PEM files.
type Certificate struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// HSTS is the Strict-Transport-Security header (RFC 6797).
type HSTS struct {
	MaxAge            time.Duration `yaml:"max_age"` // default 0: no header
	IncludeSubdomains bool          `yaml:"include_subdomains"`
	Preload           bool          `yaml:"preload"`
}

// Enabled reports whether the public listener speaks TLS: certificates
// are given, or come from ACME.
func (t TLS) Enabled() bool { return len(t.Certificates) > 0 || t.ACME.Enabled() }

// ACME obtains certificates from an ACME CA (Let's Encrypt by default)
// and renews them (gateway/acme). It is on when Domains is not empty or
// RouteHosts is set; turning it on accepts the CA's terms of service.
type ACME struct {
	// Domains get certificates at start, renewed before they expire.
	Domains List `yaml:"domains"`
	// RouteHosts gets a certificate for every host a route names, file
	// routes and routes from Consul tags alike, at the first TLS handshake
	// naming it (default false). Names no route matches get none.
	RouteHosts bool `yaml:"route_hosts"`
	// Email is the ACME account's contact (recommended: the CA warns of
	// expiring certificates and problems there).
	Email string `yaml:"email"`
	// CA is the CA's ACME directory URL (default Let's Encrypt's production
	// directory, DefaultACMECA).
	CA string `yaml:"ca"`
	// CARoot is a PEM file of the root(s) that sign the ACME server's own
	// HTTPS certificate, for a private CA or pebble (default: the system's).
	CARoot string `yaml:"ca_root"`
	// Storage keeps accounts, keys and certificates: "redis" (latch's
	// redis.url, so replicas share certificates and take turns to obtain
	// them) or a directory (default: "redis" when redis.url is set, else
	// $XDG_DATA_HOME/latch/acme, ~/.local/share/latch/acme).
	Storage string `yaml:"storage"`
	// Challenges are the challenge types offered: http-01 (answered on
	// port 80, the plain-HTTP listener) and tls-alpn-01 (answered on the
	// TLS listener, port 443). Default both.
	Challenges Opt[List] `yaml:"challenges"`
}

// Enabled reports whether ACME is on.
func (a ACME) Enabled() bool { return len(a.Domains) > 0 || a.RouteHosts }

// ACME challenge types (ACME.Challenges).
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// DefaultACMECA is Let's Encrypt's production ACME directory.
const DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"
