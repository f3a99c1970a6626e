package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/policy"
)

// problems collects validation errors, each prefixed with the field's path
// (and, when src says where the config came from, the file and line, the
// flag, or the route as the user wrote it).
type problems struct {
	errs []error
	src  *source
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, errors.New(p.src.render(field, fmt.Sprintf(format, args...))))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// validate checks a defaulted config. Every error names the field by its
// YAML path, e.g. "routes[1].breaker.failure_ratio: must be in [0, 1]".
func (c *Config) validate(p *problems) {
	checkAddr := func(field, addr string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			p.add(field, "%q is not host:port", addr)
		}
	}
	checkAddr("listen", c.Listen)
	if c.Admin.Listen != "off" {
		checkAddr("admin.listen", c.Admin.Listen)
	}
	if c.Metrics.Listen != "" {
		checkAddr("metrics.listen", c.Metrics.Listen)
	}
	c.Tracing.validate(p)
	for i, h := range c.Admin.AllowedHosts {
		if h == "" || strings.ContainsAny(h, ":/ \t[]@") {
			p.add(fmt.Sprintf("admin.allowed_hosts[%d]", i), "%q is not a host name (no scheme, port or path)", h)
		}
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis://") &&
		!strings.HasPrefix(c.Redis.URL, "rediss://") && !strings.HasPrefix(c.Redis.URL, "unix://") {
		p.add("redis.url", "must be a redis://, rediss:// or unix:// URL")
	} else if err := redisPorts(c.Redis.URL); err != nil {
		p.add("redis.url", "%v", err)
	}
	if err := discovery.ValidConsistency(c.Consul.Consistency); err != nil {
		p.add("consul.consistency", "%v", err)
	}
	if (c.Consul.TLS.CertFile == "") != (c.Consul.TLS.KeyFile == "") {
		p.add("consul.tls", "cert_file and key_file go together")
	}
	if c.Consul.Token != "" && c.Consul.TokenFile != "" {
		p.add("consul.token_file", "set token or token_file, not both")
	}
	c.TLS.validate(p, checkAddr)
	if i := c.Server.Implementation; i != "h1" && i != "net/http" {
		p.add("server.implementation", "%q is not h1 or net/http", i)
	}
	if c.Redis.URL != "" && len(c.Cookie.Secrets) == 0 && c.Cookie.SecretFile == "" && !c.Cookie.Ephemeral {
		// Issue 17: a random secret per replica in front of a shared store
		// moved clients between backends as they moved between replicas.
		p.add("cookie.secrets", "required with redis.url (replicas must share it): set "+EnvCookieSecret+
			" (openssl rand -hex 32), cookie.secret_file / "+EnvCookieSecretFile+" on a volume the replicas share, "+
			"or cookie.ephemeral: true for a random secret per process")
	}
	for i, s := range c.Cookie.Secrets {
		if len(s) < 16 {
			p.add(fmt.Sprintf("cookie.secrets[%d]", i), "must be at least 16 bytes, got %d", len(s))
		}
		if slices.Contains(placeholderSecrets, s) {
			p.add(fmt.Sprintf("cookie.secrets[%d]", i), "is a published placeholder: set "+EnvCookieSecret+
				" to a secret of your own (openssl rand -hex 32), or leave it unset and set "+EnvCookieSecretFile+
				" to a file latch creates")
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format", "%q is not text or json", c.Log.Format)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"redis.timeout", c.Redis.Timeout.Get()}, {"redis.cache_ttl", c.Redis.CacheTTL.Get()},
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout.Get()}, {"server.read_timeout", c.Server.ReadTimeout},
		{"server.write_timeout", c.Server.WriteTimeout}, {"server.idle_timeout", c.Server.IdleTimeout.Get()},
		{"server.shutdown_timeout", c.Server.ShutdownTimeout.Get()},
		{"transport.dial_timeout", c.Transport.DialTimeout.Get()},
		{"transport.response_header_timeout", c.Transport.ResponseHeaderTimeout.Get()},
		{"transport.idle_conn_timeout", c.Transport.IdleConnTimeout.Get()},
	} {
		if d.v < 0 {
			p.add(d.field, "must not be negative")
		}
	}
	for _, n := range []struct {
		field string
		v     int
	}{
		{"redis.cache_size", c.Redis.CacheSize.Get()},
		{"transport.max_idle_conns_per_host", c.Transport.MaxIdleConnsPerHost.Get()},
		{"transport.max_idle_conns", c.Transport.MaxIdleConns.Get()},
		{"server.max_connections", c.Server.MaxConnections.Get()},
		{"server.max_connections_per_ip", c.Server.MaxConnectionsPerIP},
	} {
		if n.v < 0 {
			p.add(n.field, "must not be negative")
		}
	}
	if c.Server.MaxHeaderBytes.Get() < 1024 {
		p.add("server.max_header_bytes", "must be at least 1024")
	}
	if m := c.Server.MaxHeaderMemory.Get(); m < int64(c.Server.MaxHeaderBytes.Get()) {
		p.add("server.max_header_memory", "must be at least server.max_header_bytes (%d)", c.Server.MaxHeaderBytes.Get())
	}
	if c.Server.MaxHeaderFields.Get() < 8 {
		p.add("server.max_header_fields", "must be at least 8")
	}
	if c.Server.BodyTimeout.Get() < 0 {
		p.add("server.body_timeout", "must not be negative")
	}
	if n := c.Server.MaxConcurrentStreams.Get(); n < 1 || n > 1<<20 {
		p.add("server.max_concurrent_streams", "must be in [1, 1048576]")
	}
	if n := c.Server.MaxBackendConnectionsPerConnection.Get(); n < 0 || n > 1<<20 {
		p.add("server.max_backend_connections_per_connection", "must be in [0, 1048576]")
	}
	if c.Transport.MaxResponseHeaderBytes.Get() < 1024 {
		p.add("transport.max_response_header_bytes", "must be at least 1024")
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			p.add(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an address or CIDR", s)
		}
	}
	c.TLS.ACME.validate(p, c.Redis.URL)
	c.Defaults.validate(p, "defaults")
	seen := map[string]int{}
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		r.validate(p, field, c.Consul.Disabled)
		key := strings.ToLower(r.Host) + r.PathPrefix
		if j, dup := seen[key]; dup {
			p.add(field, "same host and path_prefix as %s", p.src.route(j))
		}
		seen[key] = i
	}
	if len(c.Routes) == 0 && (c.Consul.Disabled || !c.Consul.RoutesFromTags.Get()) {
		p.add("routes", "no routes: set -service, list routes, or enable consul.routes_from_tags")
	}
}

func (t *TLS) validate(p *problems, checkAddr func(field, addr string)) {
	for i, c := range t.Certificates {
		if c.CertFile == "" || c.KeyFile == "" {
			p.add(fmt.Sprintf("tls.certificates[%d]", i), "cert_file and key_file are both required")
		}
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		p.add("tls.min_version", "%q is not 1.2 or 1.3", t.MinVersion)
	}
	if t.RedirectListen != "" {
		checkAddr("tls.redirect_listen", t.RedirectListen)
		if !t.Enabled() {
			p.add("tls.redirect_listen", "redirects to HTTPS, which needs tls.certificates or tls.acme")
		}
	}
	if t.HSTS.MaxAge < 0 {
		p.add("tls.hsts.max_age", "must not be negative")
	}
	if (t.HSTS.IncludeSubdomains || t.HSTS.Preload) && t.HSTS.MaxAge == 0 {
		p.add("tls.hsts.max_age", "required by include_subdomains and preload")
	}
}

// redisPorts checks the ports of a redis:// or rediss:// URL's hosts
// (several, comma-separated, for Cluster; more in addr= parameters): each
// a number from 1 to 65535. go-redis would take port 99999 and fail at
// every dial.
func redisPorts(raw string) error {
	rest, ok := strings.CutPrefix(raw, "redis://")
	if !ok {
		if rest, ok = strings.CutPrefix(raw, "rediss://"); !ok {
			return nil // unix://
		}
	}
	authority, query, _ := strings.Cut(rest, "?")
	authority, _, _ = strings.Cut(authority, "/")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	hosts := strings.Split(authority, ",")
	if q, err := url.ParseQuery(query); err == nil {
		hosts = append(hosts, q["addr"]...)
	}
	for _, h := range hosts {
		h = strings.NewReplacer("rediss://", "", "redis://", "").Replace(h)
		if h == "" || !strings.Contains(h, ":") || strings.HasSuffix(h, "]") {
			continue // no port: go-redis's default (6379)
		}
		_, port, err := net.SplitHostPort(h)
		if err != nil {
			return fmt.Errorf("%q is not host:port", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q of %q is not a number from 1 to 65535", port, h)
		}
	}
	return nil
}

func (r *Route) validate(p *problems, field string, noConsul bool) {
	if r.Service == "" {
		p.add(field+".service", "is required")
	}
	if !strings.HasPrefix(r.PathPrefix, "/") {
		p.add(field+".path_prefix", "%q must start with /", r.PathPrefix)
	}
	if strings.ContainsAny(r.Host, "/ ") {
		p.add(field+".host", "%q is not a host name", r.Host)
	}
	if noConsul && len(r.Backends) == 0 {
		p.add(field+".backends", "required when consul.disabled is set")
	}
	for i, a := range r.Backends {
		if _, _, err := net.SplitHostPort(a); err != nil {
			p.add(fmt.Sprintf("%s.backends[%d]", field, i), "%q is not host:port", a)
		}
	}
	r.RouteSettings.validate(p, field)
}

func (s *RouteSettings) validate(p *problems, field string) {
	bad := func(sub, format string, args ...any) { p.add(field+"."+sub, format, args...) }
	pol := s.Policy.Get()
	if err := policy.ValidatePolicy(pol); err != nil {
		bad("policy", "%v", err)
	}
	if slices.Contains(pol, "header_hash") && s.Hash.Header.Get() == "" {
		bad("hash.header", "required by policy header_hash")
	}
	if slices.Contains(pol, "cookie_hash") && s.Hash.Cookie.Get() == "" {
		bad("hash.cookie", "required by policy cookie_hash")
	}
	st := s.Sticky
	if st.TTL.Get() < time.Second {
		bad("sticky.ttl", "must be at least 1s")
	}
	if st.MaxAge.Get() < 0 {
		bad("sticky.max_age", "must not be negative")
	}
	if !validCookieName(st.CookieName.Get()) {
		bad("sticky.cookie_name", "%q is not a valid cookie name", st.CookieName.Get())
	}
	if l := st.Learn.Get(); l != "" && !validCookieName(l) {
		bad("sticky.learn_cookie", "%q is not a valid cookie name", l)
	}
	if h := st.Header.Get(); h != "" {
		switch {
		case !httpguts.ValidHeaderFieldName(h):
			bad("sticky.header", "%q is not a valid header name", h)
		case st.Learn.Get() != "":
			bad("sticky.header", "a session is keyed on a header or on learn_cookie, not both")
		}
	}
	if path := st.Path.Get(); !strings.HasPrefix(path, "/") || strings.ContainsAny(path, ";\r\n") {
		bad("sticky.path", "%q must start with / and contain no ';'", path)
	}
	if strings.ContainsAny(st.Domain.Get(), "; \r\n") {
		bad("sticky.domain", "%q is not a domain", st.Domain.Get())
	}
	if !slices.Contains([]string{"lax", "strict", "none"}, strings.ToLower(st.SameSite.Get())) {
		bad("sticky.same_site", "%q is not lax, strict or none", st.SameSite.Get())
	}
	if !slices.Contains([]string{"auto", "always", "never"}, st.Secure.Get()) {
		bad("sticky.secure", "%q is not auto, always or never", st.Secure.Get())
	}
	if err := s.Breaker.BreakerSettings().Validate(); err != nil {
		bad("breaker", "%v", err)
	}
	for i, code := range s.Breaker.FailureStatus.Get() {
		if code < 100 || code > 599 {
			bad(fmt.Sprintf("breaker.failure_status[%d]", i), "%d is not an HTTP status", code)
		}
	}
	if a := s.Retry.Attempts.Get(); a < 1 || a > policy.MaxSkip {
		bad("retry.attempts", "%d is not in [1, %d]", a, policy.MaxSkip)
	}
	for i, path := range s.Retry.IdempotentPaths.Get() {
		if !strings.HasPrefix(path, "/") {
			bad(fmt.Sprintf("retry.idempotent_paths[%d]", i), "%q must start with /", path)
		}
	}
	for i, code := range s.Retry.OnStatus.Get() {
		if code < 500 || code > 599 {
			bad(fmt.Sprintf("retry.on_status[%d]", i), "%d is not a 5xx status", code)
		}
	}
	h := s.HealthCheck
	switch k := h.Kind.Get(); {
	case k != CheckHTTP && k != CheckGRPC:
		bad("health_check.kind", "%q is not http or grpc", k)
	case k == CheckGRPC && s.BackendProtocol.Get() == ProtocolH1:
		bad("health_check.kind", "grpc needs backend_protocol h2c or h2 (gRPC is HTTP/2)")
	case k == CheckGRPC && h.Path.Get() != "":
		bad("health_check.path", "a path is for kind http; kind grpc checks grpc_service")
	}
	if h.Enabled() {
		if path := h.Path.Get(); path != "" && !strings.HasPrefix(path, "/") {
			bad("health_check.path", "%q must start with /", path)
		}
		if h.Interval.Get() < 100*time.Millisecond {
			bad("health_check.interval", "must be at least 100ms")
		}
		if h.Timeout.Get() <= 0 || h.Timeout.Get() > h.Interval.Get() {
			bad("health_check.timeout", "must be positive and at most the interval")
		}
		if h.HealthyThreshold.Get() < 1 {
			bad("health_check.healthy_threshold", "must be at least 1")
		}
		if h.UnhealthyThreshold.Get() < 1 {
			bad("health_check.unhealthy_threshold", "must be at least 1")
		}
	}
	if pt := s.PanicThreshold.Get(); pt > 1 || (pt < 0 && pt != -1) {
		bad("panic_threshold", "%v is not in [0, 1] (or -1: off)", pt)
	}
	if s.SlowStart.Get() < 0 {
		bad("slow_start", "must not be negative")
	}
	if s.Timeout.Get() < 0 {
		bad("timeout", "must not be negative")
	}
	if strings.ContainsAny(s.BackendTLS.ServerName.Get(), "/: ") {
		bad("backend_tls.server_name", "%q is not a host name", s.BackendTLS.ServerName.Get())
	}
	switch proto, tls := s.BackendProtocol.Get(), s.BackendTLS.Enabled.Get(); {
	case proto != ProtocolH1 && proto != ProtocolH2C && proto != ProtocolH2:
		bad("backend_protocol", "%q is not h1, h2c or h2", proto)
	case proto == ProtocolH2 && !tls:
		bad("backend_protocol", "h2 needs backend_tls.enabled (h2c is HTTP/2 over plain TCP)")
	case proto == ProtocolH2C && tls:
		bad("backend_protocol", "h2c is plain TCP, but backend_tls.enabled is true (h2 is HTTP/2 over TLS)")
	}
}

func (a *ACME) validate(p *problems, redisURL string) {
	if !a.Enabled() {
		if a.Email != "" || a.CA != "" || a.CARoot != "" || a.Storage != "" || a.Challenges.IsSet() {
			p.add("tls.acme.domains", "required (or route_hosts: true) when other tls.acme fields are set")
		}
		return
	}
	for i, d := range a.Domains {
		if !validDomain(d) {
			p.add(fmt.Sprintf("tls.acme.domains[%d]", i), "%q is not a DNS name (a wildcard needs a DNS-01 challenge, which latch does not offer)", d)
		}
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \r\n")) {
		p.add("tls.acme.email", "%q is not an email address", a.Email)
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		p.add("tls.acme.ca", "%q is not an https:// URL of an ACME directory", a.CA)
	}
	if a.Storage == "redis" && redisURL == "" {
		p.add("tls.acme.storage", "redis needs redis.url")
	}
	ch := a.Challenges.Get()
	if len(ch) == 0 {
		p.add("tls.acme.challenges", "must name http-01, tls-alpn-01 or both")
	}
	for i, c := range ch {
		if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
			p.add(fmt.Sprintf("tls.acme.challenges[%d]", i), "%q is not http-01 or tls-alpn-01", c)
		}
	}
}

// validDomain reports whether s is a DNS name an HTTP-01 or TLS-ALPN-01
// challenge can prove: labels of letters, digits and hyphens, at least
// two of them, no wildcard, no IP address.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) > 253 || !strings.Contains(s, ".") || net.ParseIP(s) != nil {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// parsePrefix parses a CIDR or a lone address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validCookieName reports whether s is an RFC 6265 token.
func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// validate checks the tracing: settings (the same rules the SDK's
// variables follow; see the tracing package).
func (t *Tracing) validate(p *problems) {
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("tracing.endpoint", "%q is not an http:// or https:// URL", t.Endpoint)
		}
	}
	switch t.Protocol {
	case "", "http/protobuf", "grpc":
	default:
		p.add("tracing.protocol", "%q is not http/protobuf or grpc", t.Protocol)
	}
	switch t.Sampler {
	case "", "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio":
	default:
		p.add("tracing.sampler", "%q is not one of always_on, always_off, traceidratio, parentbased_always_on, "+
			"parentbased_always_off, parentbased_traceidratio", t.Sampler)
	}
	if t.SamplerArg != "" {
		if f, err := strconv.ParseFloat(t.SamplerArg, 64); err != nil || f < 0 || f > 1 {
			p.add("tracing.sampler_arg", "%q is not a ratio in [0, 1]", t.SamplerArg)
		}
	}
	for pair := range strings.SplitSeq(t.ResourceAttributes, ",") {
		if k, _, ok := strings.Cut(pair, "="); strings.TrimSpace(pair) != "" && (!ok || strings.TrimSpace(k) == "") {
			p.add("tracing.resource_attributes", "%q is not key=value", pair)
			break
		}
	}
}
