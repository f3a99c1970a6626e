package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/policy"
)

// Config is latch's whole configuration. Every field documents its zero
// value; SetDefaults fills them in and Validate checks the result, naming the
// field (as its YAML path) in every error.
type Config struct {
	// Listen is the public address (default ":8080").
	Listen string `yaml:"listen"`
	Admin  Admin  `yaml:"admin"`
	Consul Consul `yaml:"consul"`
	// Discovery tunes how Consul's answers are applied.
	Discovery Discovery `yaml:"discovery"`
	Redis     Redis     `yaml:"redis"`
	Cookie    Cookie    `yaml:"cookie"`
	Log       Log       `yaml:"log"`
	Server    Server    `yaml:"server"`
	// Transport tunes the connections to backends.
	Transport Transport `yaml:"transport"`
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto latch believes (CIDRs or addresses). Empty: nobody's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Defaults apply to every route (file routes and routes from Consul tags)
	// for the fields a route leaves unset.
	Defaults RouteSettings `yaml:"defaults"`
	// Routes map requests to Consul services. The first match by host, then
	// longest path prefix, wins.
	Routes []Route `yaml:"routes"`

	trusted []netip.Prefix
}

// Admin is the admin listener: never public by default.
type Admin struct {
	// Listen is the admin address (default "127.0.0.1:9090"); "off" disables it.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on every
	// admin endpoint but /healthz and /readyz.
	Token string `yaml:"token"`
	// Pprof mounts net/http/pprof under /debug/pprof/ (default off).
	Pprof bool `yaml:"pprof"`
}

// Consul says where the agent is. Empty fields fall back to consul/api's
// own environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT...).
type Consul struct {
	// Address of the agent ("host:port" or a URL). Empty: CONSUL_HTTP_ADDR or 127.0.0.1:8500.
	Address string `yaml:"address"`
	// RoutesFromTags routes services registered with latch.* tags
	// (default true; set false to route only what the config lists).
	RoutesFromTags *bool `yaml:"routes_from_tags"`
	// Disabled runs without Consul: every route must then list static backends.
	Disabled bool `yaml:"disabled"`
	// Datacenter to read from (empty: the agent's own).
	Datacenter string `yaml:"datacenter"`
	// Tag, when set, routes only instances carrying it (and, for routes
	// from tags, only services with such an instance).
	Tag string `yaml:"tag"`
	// Token is the ACL token; TokenFile a file holding it (re-read on every
	// request). Empty: CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// TLS to the agent; any field set turns HTTPS on.
	TLS ConsulTLS `yaml:"tls"`
	// Consistency is Consul's read mode: stale (default: any server
	// answers, reads stay off the leader and keep working without one),
	// default (the leader answers) or consistent (the leader checks with a
	// quorum first).
	Consistency string `yaml:"consistency"`
}

// ConsulTLS is TLS to the Consul agent. Empty: CONSUL_CACERT,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME.
type ConsulTLS struct {
	CAFile     string `yaml:"ca_file"`     // verifies the agent's certificate
	CertFile   string `yaml:"cert_file"`   // client certificate, when the agent verifies clients
	KeyFile    string `yaml:"key_file"`    // its key
	ServerName string `yaml:"server_name"` // name expected in the agent's certificate
}

// Discovery tunes how Consul's answers are applied.
type Discovery struct {
	// EmptyGrace is how long an answer that suddenly removes every backend
	// of a service (or every service routed by tags) is held back while the
	// last good backends keep serving, marked stale (default 30s; negative:
	// apply at once). An agent restarted without its state answers so
	// until the services register again.
	EmptyGrace time.Duration `yaml:"empty_grace"`
}

// Redis is the shared session store. Empty URL: an in-memory store (sessions
// are then neither shared between replicas nor kept across restarts).
type Redis struct {
	// URL is a redis:// or rediss:// URL as go-redis parses it.
	URL string `yaml:"url"`
	// Timeout bounds every Redis call on the request path (default 25ms).
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is how long a replica trusts its local copy of a pin without
	// asking Redis (default 60s); re-pins by other replicas reach it sooner
	// through pub/sub.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the local cache (default 100000 sessions).
	CacheSize int `yaml:"cache_size"`
}

// Cookie holds the signing secrets of the affinity cookie.
type Cookie struct {
	// Secrets sign the cookie: the first signs, any verifies (rotation). At
	// least 16 bytes each, and not a placeholder from an example (below).
	// Empty: SecretFile's, else a random secret per process, with a warning.
	Secrets []string `yaml:"secrets"`
	// SecretFile, when no Secrets are given, holds the secret: read at
	// start, or created with 32 random bytes (0600) when missing, so
	// replicas sharing the file (a volume) share sessions.
	SecretFile string `yaml:"secret_file"`
}

// placeholderSecrets are cookie secrets published in examples (the compose
// file once shipped the first): anyone can forge cookies signed with them.
var placeholderSecrets = []string{"change-me-to-32-random-bytes-please"}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
	// Access writes one line per request (default true).
	Access *bool `yaml:"access"`
}

// Server holds the public listener's limits.
type Server struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // default 10s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // default 0: none (streaming uploads)
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // default 0: none (streaming, WebSocket)
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // default 120s
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`    // default 64 KiB
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`    // default 30s
	// Implementation serves the public listener: "net/http" (default) or
	// "h1" (gateway/h1: pooled buffers, no background read; see its doc
	// for what differs).
	Implementation string `yaml:"implementation"`
}

// Transport tunes the http.Transport to backends.
type Transport struct {
	DialTimeout           time.Duration `yaml:"dial_timeout"`            // default 2s
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"` // default 60s
	IdleConnTimeout       time.Duration `yaml:"idle_conn_timeout"`       // default 90s
	MaxIdleConnsPerHost   int           `yaml:"max_idle_conns_per_host"` // default 256
	MaxIdleConns          int           `yaml:"max_idle_conns"`          // default 4096
}

// Route sends matching requests to a Consul service.
type Route struct {
	// Name labels the route in logs and metrics (default: the service name).
	Name string `yaml:"name"`
	// Host matches the request's host (case-insensitive, port ignored).
	// Empty matches any host.
	Host string `yaml:"host"`
	// PathPrefix matches whole path segments: "/api" matches /api and
	// /api/x, not /apix. Default "/".
	PathPrefix string `yaml:"path_prefix"`
	// StripPrefix removes PathPrefix before forwarding.
	StripPrefix bool `yaml:"strip_prefix"`
	// Service is the Consul service name (required).
	Service string `yaml:"service"`
	// Backends lists static addresses instead of Consul (host:port).
	Backends []string `yaml:"backends"`

	RouteSettings `yaml:",inline"`

	fromTags bool
}

// RouteSettings are the per-route knobs that Config.Defaults also sets.
type RouteSettings struct {
	// Policy is the fallback chain for new sessions (default [p2c]);
	// round_robin is always the last resort.
	Policy []string `yaml:"policy"`
	// Hash configures header_hash and cookie_hash.
	Hash Hash `yaml:"hash"`
	// Sticky configures session affinity.
	Sticky Sticky `yaml:"sticky"`
	// Breaker configures the per-backend circuit breakers.
	Breaker Breaker `yaml:"breaker"`
	// Retry configures retries on another backend.
	Retry Retry `yaml:"retry"`
	// HealthCheck enables latch's own active checks next to Consul's.
	HealthCheck HealthCheck `yaml:"health_check"`
	// WarningUsable lets backends whose Consul checks warn take new
	// sessions (default true).
	WarningUsable *bool `yaml:"warning_usable"`
	// SlowStart ramps a recovered backend's share of new sessions over this
	// window (default 0: off).
	SlowStart time.Duration `yaml:"slow_start"`
	// PanicThreshold: below this fraction of healthy backends, health is
	// not trusted and all backends but draining ones serve (default 0.5;
	// -1 turns it off). Every check starts critical when a Consul agent
	// restarts; without this, that moment would herd every session onto
	// whichever backend's check ran first.
	PanicThreshold float64 `yaml:"panic_threshold"`
	// Timeout bounds a whole proxied request (default 0: none, as WebSocket
	// and streaming need).
	Timeout time.Duration `yaml:"timeout"`
}

// Hash names the key of header_hash / cookie_hash.
type Hash struct {
	Header string `yaml:"header"`
	Cookie string `yaml:"cookie"`
}

// Sticky is the affinity cookie and session store settings of a route.
type Sticky struct {
	// Enabled turns affinity on (default true).
	Enabled *bool `yaml:"enabled"`
	// TTL is the sliding lifetime of a session without requests (default 30m).
	TTL time.Duration `yaml:"ttl"`
	// Learn keys affinity on the application's own cookie of this name
	// (e.g. JSESSIONID) instead of issuing latch's cookie.
	Learn      string `yaml:"learn_cookie"`
	CookieName string `yaml:"cookie_name"` // default "latch"
	Path       string `yaml:"path"`        // default "/"
	Domain     string `yaml:"domain"`      // default none (host-only)
	// MaxAge of the cookie; 0 (default) makes it a session cookie.
	MaxAge   time.Duration `yaml:"max_age"`
	HTTPOnly *bool         `yaml:"http_only"` // default true
	SameSite string        `yaml:"same_site"` // lax (default), strict, none
	// Secure: auto (default: when the request came over TLS or from a
	// trusted proxy saying X-Forwarded-Proto: https), always, never.
	Secure string `yaml:"secure"`
}

// Breaker configures circuit breakers (see policy.BreakerSettings).
type Breaker struct {
	ConsecutiveFailures uint32        `yaml:"consecutive_failures"` // default 5
	FailureRatio        float64       `yaml:"failure_ratio"`        // 0: consecutive mode
	MinRequests         uint32        `yaml:"min_requests"`         // default 20
	Interval            time.Duration `yaml:"interval"`             // default 10s
	OpenTimeout         time.Duration `yaml:"open_timeout"`         // default 10s
	HalfOpenRequests    uint32        `yaml:"half_open_requests"`   // default 1
	// FailureStatus are the response codes that count as failures (default 502, 503, 504).
	FailureStatus []int `yaml:"failure_status"`
}

// Retry configures retries on another backend. A request is retried only
// while nothing was written to the client, and a request body only when it
// was not read.
type Retry struct {
	// Attempts is the total number of backends tried (default 3; 1 = no retry).
	Attempts int `yaml:"attempts"`
	// OnStatus: an idempotent request answered with one of these codes is
	// tried once more on another backend, if another can take it (default
	// 502, 503, 504, as HAProxy's retry-on with redispatch; an explicit
	// empty list turns it off). Once only: when every backend answers 503,
	// the second answer reaches the client, so retries at most double the
	// load on an overloaded service.
	OnStatus []int `yaml:"on_status"`
}

// HealthCheck is latch's own active health check of a route's backends.
type HealthCheck struct {
	Path               string        `yaml:"path"`                // empty: off
	Interval           time.Duration `yaml:"interval"`            // default 5s
	Timeout            time.Duration `yaml:"timeout"`             // default 1s
	HealthyThreshold   int           `yaml:"healthy_threshold"`   // default 2
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"` // default 3
}

// SetDefaults fills every unset field with its documented default.
func (c *Config) SetDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	def(&c.Listen, ":8080")
	def(&c.Admin.Listen, "127.0.0.1:9090")
	if c.Consul.RoutesFromTags == nil {
		c.Consul.RoutesFromTags = ptr(true)
	}
	defDur(&c.Discovery.EmptyGrace, 30*time.Second)
	def(&c.Consul.Consistency, "stale")
	defDur(&c.Redis.Timeout, 25*time.Millisecond)
	defDur(&c.Redis.CacheTTL, 60*time.Second)
	defInt(&c.Redis.CacheSize, 100_000)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
	if c.Log.Access == nil {
		c.Log.Access = ptr(true)
	}
	defDur(&c.Server.ReadHeaderTimeout, 10*time.Second)
	defDur(&c.Server.IdleTimeout, 120*time.Second)
	defInt(&c.Server.MaxHeaderBytes, 64<<10)
	defDur(&c.Server.ShutdownTimeout, 30*time.Second)
	defDur(&c.Transport.DialTimeout, 2*time.Second)
	defDur(&c.Transport.ResponseHeaderTimeout, 60*time.Second)
	defDur(&c.Transport.IdleConnTimeout, 90*time.Second)
	defInt(&c.Transport.MaxIdleConnsPerHost, 256)
	defInt(&c.Transport.MaxIdleConns, 4096)
	c.Defaults.fill(builtinSettings())
	for i := range c.Routes {
		r := &c.Routes[i]
		def(&r.PathPrefix, "/")
		def(&r.Name, r.Service)
		r.RouteSettings.fill(c.Defaults)
	}
}

// builtinSettings are the defaults of RouteSettings.
func builtinSettings() RouteSettings {
	return RouteSettings{
		Policy: policy.DefaultPolicy,
		Sticky: Sticky{
			Enabled: ptr(true), TTL: 30 * time.Minute, CookieName: "latch", Path: "/",
			HTTPOnly: ptr(true), SameSite: "lax", Secure: "auto",
		},
		Breaker: Breaker{
			ConsecutiveFailures: 5, MinRequests: 20, Interval: 10 * time.Second,
			OpenTimeout: 10 * time.Second, HalfOpenRequests: 1,
			FailureStatus: []int{502, 503, 504},
		},
		Retry:          Retry{Attempts: 3, OnStatus: []int{502, 503, 504}},
		HealthCheck:    HealthCheck{Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3},
		WarningUsable:  ptr(true),
		PanicThreshold: 0.5,
	}
}

// fill sets every zero field of s from d.
func (s *RouteSettings) fill(d RouteSettings) {
	if len(s.Policy) == 0 {
		s.Policy = slices.Clone(d.Policy)
	}
	if s.Hash.Header == "" {
		s.Hash.Header = d.Hash.Header
	}
	if s.Hash.Cookie == "" {
		s.Hash.Cookie = d.Hash.Cookie
	}
	st, ds := &s.Sticky, d.Sticky
	if st.Enabled == nil {
		st.Enabled = ds.Enabled
	}
	fillZero(&st.TTL, ds.TTL)
	fillZero(&st.Learn, ds.Learn)
	fillZero(&st.CookieName, ds.CookieName)
	fillZero(&st.Path, ds.Path)
	fillZero(&st.Domain, ds.Domain)
	fillZero(&st.MaxAge, ds.MaxAge)
	if st.HTTPOnly == nil {
		st.HTTPOnly = ds.HTTPOnly
	}
	fillZero(&st.SameSite, ds.SameSite)
	fillZero(&st.Secure, ds.Secure)
	b, db := &s.Breaker, d.Breaker
	fillZero(&b.ConsecutiveFailures, db.ConsecutiveFailures)
	fillZero(&b.FailureRatio, db.FailureRatio)
	fillZero(&b.MinRequests, db.MinRequests)
	fillZero(&b.Interval, db.Interval)
	fillZero(&b.OpenTimeout, db.OpenTimeout)
	fillZero(&b.HalfOpenRequests, db.HalfOpenRequests)
	if len(b.FailureStatus) == 0 {
		b.FailureStatus = slices.Clone(db.FailureStatus)
	}
	fillZero(&s.Retry.Attempts, d.Retry.Attempts)
	if s.Retry.OnStatus == nil { // [] is set: no retry on status
		s.Retry.OnStatus = slices.Clone(d.Retry.OnStatus)
	}
	h, dh := &s.HealthCheck, d.HealthCheck
	fillZero(&h.Path, dh.Path)
	fillZero(&h.Interval, dh.Interval)
	fillZero(&h.Timeout, dh.Timeout)
	fillZero(&h.HealthyThreshold, dh.HealthyThreshold)
	fillZero(&h.UnhealthyThreshold, dh.UnhealthyThreshold)
	if s.WarningUsable == nil {
		s.WarningUsable = d.WarningUsable
	}
	fillZero(&s.SlowStart, d.SlowStart)
	fillZero(&s.PanicThreshold, d.PanicThreshold)
	fillZero(&s.Timeout, d.Timeout)
}

func fillZero[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

func ptr[T any](v T) *T { return &v }

// Validate checks a defaulted config. Every error names the field by its
// YAML path, e.g. "routes[1].breaker.failure_ratio: must be in [0, 1]".
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkAddr := func(field, addr string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(field, "%q is not host:port", addr)
		}
	}
	checkAddr("listen", c.Listen)
	if c.Admin.Listen != "off" {
		checkAddr("admin.listen", c.Admin.Listen)
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis://") &&
		!strings.HasPrefix(c.Redis.URL, "rediss://") && !strings.HasPrefix(c.Redis.URL, "unix://") {
		bad("redis.url", "must be a redis://, rediss:// or unix:// URL")
	}
	if err := discovery.ValidConsistency(c.Consul.Consistency); err != nil {
		bad("consul.consistency", "%v", err)
	}
	if (c.Consul.TLS.CertFile == "") != (c.Consul.TLS.KeyFile == "") {
		bad("consul.tls", "cert_file and key_file go together")
	}
	if c.Consul.Token != "" && c.Consul.TokenFile != "" {
		bad("consul.token_file", "set token or token_file, not both")
	}
	if c.Redis.Timeout < 0 {
		bad("redis.timeout", "must not be negative")
	}
	if c.Redis.CacheTTL < 0 {
		bad("redis.cache_ttl", "must not be negative")
	}
	if c.Redis.CacheSize < 0 {
		bad("redis.cache_size", "must not be negative")
	}
	for i, s := range c.Cookie.Secrets {
		if len(s) < 16 {
			bad(fmt.Sprintf("cookie.secrets[%d]", i), "must be at least 16 bytes, got %d", len(s))
		}
		if slices.Contains(placeholderSecrets, s) {
			bad(fmt.Sprintf("cookie.secrets[%d]", i), "is a published placeholder: set "+EnvCookieSecret+
				" to a secret of your own (openssl rand -hex 32), or leave it unset and set "+EnvCookieSecretFile+
				" to a file latch creates")
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	for name, d := range map[string]time.Duration{
		"server.read_header_timeout": c.Server.ReadHeaderTimeout, "server.read_timeout": c.Server.ReadTimeout,
		"server.write_timeout": c.Server.WriteTimeout, "server.idle_timeout": c.Server.IdleTimeout,
		"server.shutdown_timeout": c.Server.ShutdownTimeout, "transport.dial_timeout": c.Transport.DialTimeout,
		"transport.response_header_timeout": c.Transport.ResponseHeaderTimeout,
		"transport.idle_conn_timeout":       c.Transport.IdleConnTimeout,
	} {
		if d < 0 {
			bad(name, "must not be negative")
		}
	}
	if c.Server.MaxHeaderBytes < 1024 {
		bad("server.max_header_bytes", "must be at least 1024")
	}
	if i := c.Server.Implementation; i != "" && i != "net/http" && i != "h1" {
		bad("server.implementation", "%q is not net/http or h1", i)
	}
	if c.Transport.MaxIdleConnsPerHost < 0 {
		bad("transport.max_idle_conns_per_host", "must not be negative")
	}
	if c.Transport.MaxIdleConns < 0 {
		bad("transport.max_idle_conns", "must not be negative")
	}
	c.trusted = c.trusted[:0]
	for i, p := range c.TrustedProxies {
		prefix, err := parsePrefix(p)
		if err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an address or CIDR", p)
			continue
		}
		c.trusted = append(c.trusted, prefix)
	}
	errs = append(errs, c.Defaults.validate("defaults")...)
	seen := map[string]int{}
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		errs = append(errs, r.validate(field, c.Consul.Disabled)...)
		key := strings.ToLower(r.Host) + r.PathPrefix
		if j, dup := seen[key]; dup {
			bad(field, "same host and path_prefix as routes[%d]", j)
		}
		seen[key] = i
	}
	if len(c.Routes) == 0 && (c.Consul.Disabled || !*c.Consul.RoutesFromTags) {
		bad("routes", "no routes: set -service, list routes, or enable consul.routes_from_tags")
	}
	return errors.Join(errs...)
}

func (r *Route) validate(field string, noConsul bool) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if r.Service == "" {
		bad("service", "is required")
	}
	if !strings.HasPrefix(r.PathPrefix, "/") {
		bad("path_prefix", "%q must start with /", r.PathPrefix)
	}
	if strings.ContainsAny(r.Host, "/ ") {
		bad("host", "%q is not a host name", r.Host)
	}
	if noConsul && len(r.Backends) == 0 {
		bad("backends", "required when consul.disabled is set")
	}
	for i, a := range r.Backends {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(fmt.Sprintf("backends[%d]", i), "%q is not host:port", a)
		}
	}
	return append(errs, r.RouteSettings.validate(field)...)
}

func (s *RouteSettings) validate(field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if err := policy.ValidatePolicy(s.Policy); err != nil {
		bad("policy", "%v", err)
	}
	if slices.Contains(s.Policy, "header_hash") && s.Hash.Header == "" {
		bad("hash.header", "required by policy header_hash")
	}
	if slices.Contains(s.Policy, "cookie_hash") && s.Hash.Cookie == "" {
		bad("hash.cookie", "required by policy cookie_hash")
	}
	st := s.Sticky
	if st.TTL < time.Second {
		bad("sticky.ttl", "must be at least 1s")
	}
	if st.MaxAge < 0 {
		bad("sticky.max_age", "must not be negative")
	}
	if !validCookieName(st.CookieName) {
		bad("sticky.cookie_name", "%q is not a valid cookie name", st.CookieName)
	}
	if st.Learn != "" && !validCookieName(st.Learn) {
		bad("sticky.learn_cookie", "%q is not a valid cookie name", st.Learn)
	}
	if !strings.HasPrefix(st.Path, "/") || strings.ContainsAny(st.Path, ";\r\n") {
		bad("sticky.path", "%q must start with / and contain no ';'", st.Path)
	}
	if strings.ContainsAny(st.Domain, "; \r\n") {
		bad("sticky.domain", "%q is not a domain", st.Domain)
	}
	if !slices.Contains([]string{"lax", "strict", "none"}, strings.ToLower(st.SameSite)) {
		bad("sticky.same_site", "%q is not lax, strict or none", st.SameSite)
	}
	if !slices.Contains([]string{"auto", "always", "never"}, st.Secure) {
		bad("sticky.secure", "%q is not auto, always or never", st.Secure)
	}
	if err := s.Breaker.settings().Validate(); err != nil {
		bad("breaker", "%v", err)
	}
	for i, code := range s.Breaker.FailureStatus {
		if code < 100 || code > 599 {
			bad(fmt.Sprintf("breaker.failure_status[%d]", i), "%d is not an HTTP status", code)
		}
	}
	if s.Retry.Attempts < 1 || s.Retry.Attempts > 10 {
		bad("retry.attempts", "%d is not in [1, 10]", s.Retry.Attempts)
	}
	for i, code := range s.Retry.OnStatus {
		if code < 500 || code > 599 {
			bad(fmt.Sprintf("retry.on_status[%d]", i), "%d is not a 5xx status", code)
		}
	}
	h := s.HealthCheck
	if h.Path != "" {
		if !strings.HasPrefix(h.Path, "/") {
			bad("health_check.path", "%q must start with /", h.Path)
		}
		if h.Interval < 100*time.Millisecond {
			bad("health_check.interval", "must be at least 100ms")
		}
		if h.Timeout <= 0 || h.Timeout > h.Interval {
			bad("health_check.timeout", "must be positive and at most the interval")
		}
		if h.HealthyThreshold < 1 {
			bad("health_check.healthy_threshold", "must be at least 1")
		}
		if h.UnhealthyThreshold < 1 {
			bad("health_check.unhealthy_threshold", "must be at least 1")
		}
	}
	if s.PanicThreshold > 1 || (s.PanicThreshold < 0 && s.PanicThreshold != -1) {
		bad("panic_threshold", "%v is not in [0, 1] (or -1: off)", s.PanicThreshold)
	}
	if s.SlowStart < 0 {
		bad("slow_start", "must not be negative")
	}
	if s.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	return errs
}

// settings converts the YAML breaker to policy's.
func (b Breaker) settings() policy.BreakerSettings {
	return policy.BreakerSettings{
		ConsecutiveFailures: b.ConsecutiveFailures,
		FailureRatio:        b.FailureRatio,
		MinRequests:         b.MinRequests,
		Interval:            b.Interval,
		OpenTimeout:         b.OpenTimeout,
		HalfOpenRequests:    b.HalfOpenRequests,
	}
}

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
