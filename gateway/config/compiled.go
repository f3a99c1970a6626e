package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Compiled is a defaulted, validated config: what gateway.New requires.
// It is immutable; its accessors hand out copies.
type Compiled struct {
	cfg     Config // defaulted
	trusted []netip.Prefix
	routes  []*Spec
	roots   map[string]*x509.CertPool    // backend_tls.ca_file → its roots
	sums    map[string][sha256.Size]byte // backend_tls.ca_file → its PEM's SHA-256

	tlsMu sync.Mutex
	tlsOf map[BackendTLS]*tls.Config // one per setting: routes (and routes from tags) share it, and its pool
}

// Compile fills c's defaults and validates the result. Every error names
// the field by its path.
func (c Config) Compile() (*Compiled, error) {
	d := c.withDefaults()
	p := problems{src: c.src}
	d.validate(&p)
	if err := p.err(); err != nil {
		return nil, err
	}
	out := &Compiled{cfg: d, roots: map[string]*x509.CertPool{}, sums: map[string][sha256.Size]byte{}}
	for _, s := range d.TrustedProxies {
		pr, _ := parsePrefix(s) // validated
		out.trusted = append(out.trusted, pr)
	}
	out.addRoots(&p, "defaults", d.Defaults)
	for i, r := range d.Routes {
		out.addRoots(&p, fmt.Sprintf("routes[%d]", i), r.RouteSettings)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	for _, r := range d.Routes {
		out.routes = append(out.routes, out.newSpec(r, false))
	}
	return out, nil
}

// addRoots reads the CA file of s's backend_tls, once per file.
func (c *Compiled) addRoots(p *problems, field string, s RouteSettings) {
	f := s.BackendTLS.CAFile.Get()
	if f == "" || c.roots[f] != nil {
		return
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		p.add(field+".backend_tls.ca_file", "%v", err)
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		p.add(field+".backend_tls.ca_file", "%s holds no PEM certificate", f)
		return
	}
	c.roots[f] = pool
	c.sums[f] = sha256.Sum256(pem)
}

// backendTLS is the client config of a route's backend_tls (nil: off).
// Its ServerName is empty unless set: the dialer names each backend.
func (c *Compiled) backendTLS(bt BackendTLS) *tls.Config {
	if !bt.Enabled.Get() {
		return nil
	}
	c.tlsMu.Lock()
	defer c.tlsMu.Unlock()
	if tc := c.tlsOf[bt]; tc != nil {
		return tc
	}
	tc := &tls.Config{
		RootCAs:            c.roots[bt.CAFile.Get()], // nil: the system's
		ServerName:         bt.ServerName.Get(),
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	if c.tlsOf == nil {
		c.tlsOf = map[BackendTLS]*tls.Config{}
	}
	c.tlsOf[bt] = tc
	return tc
}

// Config returns the defaulted config (every Opt set). Its slices are
// shared with c: read them, never write them.
func (c *Compiled) Config() Config { return c.cfg }

// Trusted are the trusted proxies' prefixes.
func (c *Compiled) Trusted() []netip.Prefix { return slices.Clone(c.trusted) }

// Routes are the config file's (and flags') routes.
func (c *Compiled) Routes() []*Spec { return slices.Clone(c.routes) }

// Spec is one compiled route: its settings (every Opt set) and what the
// request path derives from them, computed once.
type Spec struct {
	route    Route
	fromTags bool
	host     string // lower case; "" = any
	prefix   string // "/" or "/api" (no trailing slash)
	suffix   string // "; Path=/; HttpOnly; SameSite=Lax" and friends
	// failStatus and retryStatus index HTTP status codes 0-599.
	failStatus  [600]bool
	retryStatus [600]bool
	attempts    int
	timeout     time.Duration
	backendTLS  *tls.Config // nil: plain TCP
	tlsKey      TLSKey
	protocol    string   // ProtocolH1, ProtocolH2C or ProtocolH2
	idempotent  []string // retry.idempotent_paths
}

// TLSKey identifies a backend TLS client config by what it is built from:
// the CA file's contents (not its name), the server name and the minimum
// version. Configs with equal keys are interchangeable, from one reload
// to the next too: forward keys its backend TLS connection pools by it,
// so a reload that leaves backend_tls alone keeps their connections.
// Comparable; the zero TLSKey is plain TCP's.
type TLSKey struct {
	roots      [sha256.Size]byte // of the CA file's PEM; zero: the system's roots
	serverName string
	minVersion uint16
}

func (c *Compiled) newSpec(r Route, fromTags bool) *Spec {
	s := &Spec{route: r, fromTags: fromTags, host: strings.ToLower(r.Host), backendTLS: c.backendTLS(r.BackendTLS)}
	if tc := s.backendTLS; tc != nil {
		s.tlsKey = TLSKey{roots: c.sums[r.BackendTLS.CAFile.Get()], serverName: tc.ServerName, minVersion: tc.MinVersion}
	}
	s.prefix = strings.TrimSuffix(r.PathPrefix, "/")
	if s.prefix == "" {
		s.prefix = "/"
	}
	for _, c := range r.Breaker.FailureStatus.Get() {
		s.failStatus[c] = true
	}
	for _, c := range r.Retry.OnStatus.Get() {
		s.retryStatus[c] = true
	}
	s.suffix = cookieSuffix(r.Sticky)
	s.attempts, s.timeout = r.Retry.Attempts.Get(), r.Timeout.Get()
	s.protocol = r.BackendProtocol.Get()
	s.idempotent = r.Retry.IdempotentPaths.Get()
	return s
}

// cookieSuffix renders the affinity cookie's attributes once.
func cookieSuffix(st Sticky) string {
	var b strings.Builder
	b.WriteString("; Path=")
	b.WriteString(st.Path.Get())
	if d := st.Domain.Get(); d != "" {
		b.WriteString("; Domain=")
		b.WriteString(d)
	}
	if ma := st.MaxAge.Get(); ma > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(int64(ma/time.Second), 10))
	}
	if st.HTTPOnly.Get() {
		b.WriteString("; HttpOnly")
	}
	switch strings.ToLower(st.SameSite.Get()) {
	case "strict":
		b.WriteString("; SameSite=Strict")
	case "none":
		b.WriteString("; SameSite=None")
	default:
		b.WriteString("; SameSite=Lax")
	}
	return b.String()
}

// Route is the route's config, defaulted. Its slices are shared: read only.
func (s *Spec) Route() Route { return s.route }

// Name labels the route in logs and metrics.
func (s *Spec) Name() string { return s.route.Name }

// Service is the service the route sends to.
func (s *Spec) Service() string { return s.route.Service }

// FromTags reports whether the route came from Consul tags.
func (s *Spec) FromTags() bool { return s.fromTags }

// Attempts is the number of backends a request is sent to at most.
func (s *Spec) Attempts() int { return s.attempts }

// Timeout bounds a whole request (0: none).
func (s *Spec) Timeout() time.Duration { return s.timeout }

// BackendTLS is the TLS client config toward the route's backends (nil:
// plain TCP). Shared: never modify it; Clone it to set a ServerName.
func (s *Spec) BackendTLS() *tls.Config { return s.backendTLS }

// BackendTLSKey identifies BackendTLS's settings (see TLSKey).
func (s *Spec) BackendTLSKey() TLSKey { return s.tlsKey }

// BackendProtocol is the HTTP version spoken to the route's backends:
// ProtocolH1, ProtocolH2C or ProtocolH2.
func (s *Spec) BackendProtocol() string { return s.protocol }

// IdempotentPath reports whether requests of path may be sent again as an
// idempotent method's are (retry.idempotent_paths).
func (s *Spec) IdempotentPath(path string) bool { return slices.Contains(s.idempotent, path) }

// HTTP2 reports whether the route's backends speak HTTP/2 (h2c or h2).
func (s *Spec) HTTP2() bool { return s.protocol != ProtocolH1 }

// Host is the host matched, lower case ("" = any).
func (s *Spec) Host() string { return s.host }

// Prefix is the path prefix matched: "/" or "/api" (no trailing slash).
func (s *Spec) Prefix() string { return s.prefix }

// CookieSuffix is the affinity cookie's attributes ("; Path=/; HttpOnly; ...").
func (s *Spec) CookieSuffix() string { return s.suffix }

// IsFailure reports whether a response code counts as a breaker failure.
func (s *Spec) IsFailure(code int) bool { return code >= 0 && code < 600 && s.failStatus[code] }

// RetriesOn reports whether a response code is retried on another backend.
func (s *Spec) RetriesOn(code int) bool { return code >= 0 && code < 600 && s.retryStatus[code] }

// Matches reports whether path is under the route's prefix, on a segment
// boundary: "/api" matches "/api" and "/api/x" but not "/apix".
func (s *Spec) Matches(path string) bool {
	if s.prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, s.prefix) &&
		(len(path) == len(s.prefix) || path[len(s.prefix)] == '/')
}

// StripPrefix returns the path to forward: the route prefix removed when
// strip_prefix is set, kept rooted.
func (s *Spec) StripPrefix(path string) string {
	if !s.route.StripPrefix || s.prefix == "/" {
		return path
	}
	rest := strings.TrimPrefix(path, s.prefix)
	if rest == "" || rest[0] != '/' {
		return "/" + rest
	}
	return rest
}

// Strips reports whether the route strips its prefix from forwarded paths.
func (s *Spec) Strips() bool { return s.route.StripPrefix && s.prefix != "/" }
