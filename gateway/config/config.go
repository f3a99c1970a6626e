// Package config is latch's configuration: the types a YAML file, the
// LATCH_* environment variables and the flags fill (in that order of
// precedence, lowest first), their documented defaults, and validation into
// a Compiled config, the immutable form gateway.New requires.
//
// Reading order: config.go (the types, each field's default in its
// comment), yaml.go (Parse: strict decoding, errors named by field path and
// line), load.go (Load: file, environment, flags), defaults.go, validate.go,
// compiled.go (Compile and the per-route Spec the gateway serves with),
// tags.go (routes from Consul tags).
//
// Adding a setting: a field here (an Opt when it has a default or is per
// route), its default in defaults.go, its check in validate.go.
package config

import (
	"time"
)

// Config is latch's whole configuration as written. Fields that have a
// default are Opts (unset differs from zero); plain strings use "" for
// their default.
type Config struct {
	// Listen is the public address (default ":8080").
	Listen string `yaml:"listen"`
	Admin  Admin  `yaml:"admin"`
	// Metrics is the optional listener serving /metrics alone.
	Metrics Metrics `yaml:"metrics"`
	Consul  Consul  `yaml:"consul"`
	// Discovery tunes how Consul's answers are applied.
	Discovery Discovery `yaml:"discovery"`
	Redis     Redis     `yaml:"redis"`
	Cookie    Cookie    `yaml:"cookie"`
	Log       Log       `yaml:"log"`
	Server    Server    `yaml:"server"`
	// Transport tunes the connections to backends.
	Transport Transport `yaml:"transport"`
	// TLS terminates TLS on the public listener (off without certificates).
	TLS TLS `yaml:"tls"`
	// Tracing exports OpenTelemetry traces (off unless an endpoint is set).
	Tracing Tracing `yaml:"tracing"`
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto latch believes (CIDRs or addresses). Empty: nobody's.
	TrustedProxies List `yaml:"trusted_proxies"`
	// Defaults apply to every route (file routes and routes from Consul tags)
	// for the fields a route leaves unset.
	Defaults RouteSettings `yaml:"defaults"`
	// Routes map requests to Consul services. The first match by host, then
	// longest path prefix, wins.
	Routes []Route `yaml:"routes"`

	// src is where the fields came from (Parse and Load fill it), so that
	// validation errors name the file, the line and the flag.
	src *source
}

// Tracing is where latch sends OpenTelemetry traces, by OTLP. Each field is
// also read from the standard variable named beside it, which wins over
// the file. Off while Endpoint is empty.
type Tracing struct {
	// Endpoint is the collector's base URL, e.g. http://127.0.0.1:4318
	// (OTEL_EXPORTER_OTLP_ENDPOINT); http:// sends in the clear.
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf (default) or grpc (OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string `yaml:"protocol"`
	// ServiceName names latch in the traces, default "latch" (OTEL_SERVICE_NAME).
	ServiceName string `yaml:"service_name"`
	// Sampler is one of always_on, always_off, traceidratio,
	// parentbased_always_on (default), parentbased_always_off,
	// parentbased_traceidratio (OTEL_TRACES_SAMPLER).
	Sampler string `yaml:"sampler"`
	// SamplerArg is the traceidratio samplers' ratio in [0, 1], default 1
	// (OTEL_TRACES_SAMPLER_ARG).
	SamplerArg string `yaml:"sampler_arg"`
	// ResourceAttributes are key=value pairs separated by commas, values
	// percent-encoded (OTEL_RESOURCE_ATTRIBUTES).
	ResourceAttributes string `yaml:"resource_attributes"`
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
	// AllowedHosts are the host names (no port) the admin listener answers
	// to when no Token is set, besides IP addresses and localhost: a name
	// a web page could point at the listener by DNS rebinding is refused
	// (default: none). With a Token every name is answered.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Metrics is a listener serving only /metrics, without the admin token,
// so Prometheus can scrape without holding the token that drains backends.
// /metrics stays on the admin listener too.
type Metrics struct {
	// Listen is its address, e.g. ":9091" (default "": no such listener).
	Listen string `yaml:"listen"`
}

// Consul says where the agent is. Empty fields fall back to consul/api's
// own environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT...).
type Consul struct {
	// Address of the agent ("host:port" or a URL). Empty: CONSUL_HTTP_ADDR or 127.0.0.1:8500.
	Address string `yaml:"address"`
	// RoutesFromTags routes services registered with latch.* tags
	// (default true; set false to route only what the config lists).
	RoutesFromTags Opt[bool] `yaml:"routes_from_tags"`
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
	EmptyGrace Opt[time.Duration] `yaml:"empty_grace"`
	// FirstCheckWait is how long latch, starting, waits for Consul to run
	// a health check of a service's backends before calling the service
	// ready with none answered (default 10s; 0: ready at Consul's first
	// answer). A check starts critical until its first run, so without the
	// wait /readyz says ready while every request gets 503.
	FirstCheckWait Opt[time.Duration] `yaml:"first_check_wait"`
}

// Redis is the shared session store. Empty URL: an in-memory store (sessions
// are then neither shared between replicas nor kept across restarts).
type Redis struct {
	// URL is a redis:// or rediss:// URL as go-redis parses it.
	URL string `yaml:"url"`
	// Timeout bounds every Redis call on the request path (default 25ms).
	Timeout Opt[time.Duration] `yaml:"timeout"`
	// CacheTTL is how long a replica trusts its local copy of a pin without
	// asking Redis (default 60s); re-pins by other replicas reach it sooner
	// through pub/sub.
	CacheTTL Opt[time.Duration] `yaml:"cache_ttl"`
	// CacheSize bounds the local cache (default 100000 sessions).
	CacheSize Opt[int] `yaml:"cache_size"`
}

// Cookie holds the signing secrets of the affinity cookie.
type Cookie struct {
	// Secrets sign the cookie: the first signs, any verifies (rotation). At
	// least 16 bytes each, and not a placeholder from an example (below).
	// Empty: SecretFile's, else (only with Ephemeral, or without a
	// redis.url) a random secret per process, with a warning.
	Secrets List `yaml:"secrets"`
	// SecretFile, when no Secrets are given, holds the secret: read at
	// start, or created with 32 random bytes (0600) when missing, so
	// replicas sharing the file (a volume) share sessions.
	SecretFile string `yaml:"secret_file"`
	// Ephemeral allows a random secret per process with a shared store
	// (redis.url) configured: replicas then do not honour each other's
	// cookies, and a restart forgets every cookie's hint (default false:
	// a start-up error names cookie.secrets).
	Ephemeral bool `yaml:"ephemeral"`
}

// placeholderSecrets are cookie secrets published in examples (the compose
// file once shipped the first): anyone can forge cookies signed with them.
var placeholderSecrets = []string{"change-me-to-32-random-bytes-please"}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
	// Access writes one line per request (default true).
	Access Opt[bool] `yaml:"access"`
	// AccessFile, when set, is the file the access log is appended to
	// (default "": the process log's stderr). latch reopens it on SIGUSR1
	// and when it was renamed or removed, so logrotate works.
	AccessFile string `yaml:"access_file"`
}

// Server holds the public listener's limits.
type Server struct {
	ReadHeaderTimeout Opt[time.Duration] `yaml:"read_header_timeout"` // default 10s; bounds a TLS handshake too (10s when 0)
	ReadTimeout       time.Duration      `yaml:"read_timeout"`        // default 0: none (streaming uploads)
	WriteTimeout      time.Duration      `yaml:"write_timeout"`       // default 0: none (streaming, WebSocket)
	IdleTimeout       Opt[time.Duration] `yaml:"idle_timeout"`        // default 120s
	MaxHeaderBytes    Opt[int]           `yaml:"max_header_bytes"`    // default 64 KiB
	MaxHeaderFields   Opt[int]           `yaml:"max_header_fields"`   // default 100 (HAProxy's 101 with the request line); more: 431
	// MaxHeaderMemory bounds the bytes all client connections together may
	// hold for request heads beyond 4 KiB each (default 64 MiB: a thousand
	// 64 KiB heads at once; implementation h1 only). A head that would need
	// more is answered 503 and its connection closed.
	MaxHeaderMemory Opt[int64]         `yaml:"max_header_memory"`
	ShutdownTimeout Opt[time.Duration] `yaml:"shutdown_timeout"` // default 30s
	// ReusePort opens the public listener with SO_REUSEPORT (default
	// false), so a new latch can bind the same address while the old one
	// drains: the zero-downtime upgrade (docs/operations.md). Linux and macOS only.
	ReusePort bool `yaml:"reuse_port"`
	// Implementation serves the public listener: "h1" (default; gateway/h1:
	// RFC 9112 strict, pooled buffers, no background read; see its doc for
	// what differs) or "net/http" (Go's server, more lenient: see
	// docs/behaviour.md for what latch cannot refuse on it).
	Implementation string `yaml:"implementation"`
	// AllowTrace forwards TRACE requests (default false: 405). A TRACE
	// echoes the request, cookies and credentials a front proxy added
	// included, to whoever sent it.
	AllowTrace bool `yaml:"allow_trace"`
	// MaxConnections caps the public listener's open connections (default
	// 10000; 0: no cap), handshaking ones included. A connection over the
	// cap is answered 503 with Connection: close and closed; with TLS or
	// h2c on h1, closed at once (before its handshake, or before its first
	// bytes are read).
	MaxConnections Opt[int] `yaml:"max_connections"`
	// MaxConnectionsPerIP caps one client address's open connections
	// (default 0: no cap), refused as over MaxConnections. Behind a
	// front proxy every client has its address: leave it off there.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// BodyTimeout is the longest wait for the next bytes of a request body
	// (default 60s, as nginx's client_body_timeout; 0: none) when
	// ReadTimeout is 0. No backend connection is taken before the first
	// bytes arrive (or none are needed), so a client that announces a body
	// and sends nothing holds no backend; at the timeout it gets 408.
	BodyTimeout Opt[time.Duration] `yaml:"body_timeout"`
	// MaxConcurrentStreams caps the requests one HTTP/2 connection has open
	// at once (default 100, as HAProxy and nginx's 128; Go's own is 250).
	MaxConcurrentStreams Opt[int] `yaml:"max_concurrent_streams"`
	// MaxBackendConnectionsPerConnection caps the backend connections one
	// client connection holds at once (default 32; 0: no cap): on HTTP/2,
	// its streams in flight to backends. A request over it waits for one
	// to free at most transport.dial_timeout (as HAProxy's timeout queue
	// defaults to its timeout connect), then gets 503. HAProxy and nginx
	// give every stream its own (100 and 128 streams); 32 is five times
	// the 6 connections a browser opens to a host over HTTP/1.1. Routes
	// whose backends speak HTTP/2 share backend connections: not counted.
	MaxBackendConnectionsPerConnection Opt[int] `yaml:"max_backend_connections_per_connection"`
	// H2C serves HTTP/2 without TLS on the public listener (default
	// false): a connection that opens with HTTP/2's client preface (prior
	// knowledge, RFC 9113 §3.3, as gRPC clients send it) is served as
	// HTTP/2 under the same limits as HTTP/2 over TLS. Not with tls (there
	// HTTP/2 comes by ALPN). A request asking to upgrade to h2c (Upgrade:
	// h2c, RFC 7540 §3.2, deprecated by RFC 9113) is served in HTTP/1.1
	// with or without it, its Upgrade never forwarded.
	H2C bool `yaml:"h2c"`
}

// Transport tunes the connections to backends.
type Transport struct {
	DialTimeout           Opt[time.Duration] `yaml:"dial_timeout"`            // default 2s
	ResponseHeaderTimeout Opt[time.Duration] `yaml:"response_header_timeout"` // default 60s; 0: none
	IdleConnTimeout       Opt[time.Duration] `yaml:"idle_conn_timeout"`       // default 90s; 0: none
	MaxIdleConnsPerHost   Opt[int]           `yaml:"max_idle_conns_per_host"` // default 256
	MaxIdleConns          Opt[int]           `yaml:"max_idle_conns"`          // default 4096
	// MaxResponseHeaderBytes bounds a backend's response head (status
	// line and fields; trailers too), on every path: a larger one is a
	// 502 and a failure of the backend. Default 64 KiB, at least 1024.
	MaxResponseHeaderBytes Opt[int] `yaml:"max_response_header_bytes"`
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
	Backends List `yaml:"backends"`

	RouteSettings `yaml:",inline"`
}

// RouteSettings are the per-route knobs that Config.Defaults also sets.
// Every field is an Opt: a route inherits what it leaves unset.
type RouteSettings struct {
	// Policy is the fallback chain for new sessions (default [p2c]);
	// round_robin is always the last resort.
	Policy Opt[List] `yaml:"policy"`
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
	WarningUsable Opt[bool] `yaml:"warning_usable"`
	// SlowStart ramps a recovered backend's share of new sessions over this
	// window (default 0: off).
	SlowStart Opt[time.Duration] `yaml:"slow_start"`
	// PanicThreshold: below this fraction of healthy backends, health is
	// not trusted and all backends but draining ones serve (default 0.5;
	// -1 turns it off). Every check starts critical when a Consul agent
	// restarts; without this, that moment would herd every session onto
	// whichever backend's check ran first.
	PanicThreshold Opt[float64] `yaml:"panic_threshold"`
	// Timeout bounds a whole proxied request (default 0: none, as WebSocket
	// and streaming need).
	Timeout Opt[time.Duration] `yaml:"timeout"`
	// BackendTLS speaks TLS to the route's backends (HTTP/1.1, or HTTP/2
	// with backend_protocol h2).
	BackendTLS BackendTLS `yaml:"backend_tls"`
	// BackendProtocol is the HTTP version spoken to the route's backends
	// (default h1): h1 (HTTP/1.1), h2c (HTTP/2 over plain TCP with prior
	// knowledge, as gRPC servers without TLS speak) or h2 (HTTP/2 over
	// TLS negotiated by ALPN; needs backend_tls). Consul tag
	// latch.backend_protocol=h2c.
	BackendProtocol Opt[string] `yaml:"backend_protocol"`
}

// Backend protocols (RouteSettings.BackendProtocol).
const (
	ProtocolH1  = "h1"
	ProtocolH2C = "h2c"
	ProtocolH2  = "h2"
)

// BackendTLS is TLS from latch to a route's backends. The backend's
// certificate is verified against CAFile (default: the system's roots) for
// ServerName (default: the host of the backend's address, also sent as
// SNI when it is a name).
type BackendTLS struct {
	Enabled    Opt[bool]   `yaml:"enabled"`     // default false; Consul tag latch.backend_tls=true
	CAFile     Opt[string] `yaml:"ca_file"`     // PEM roots; default "": the system's
	ServerName Opt[string] `yaml:"server_name"` // default "": the backend's host
}

// Hash names the key of header_hash / cookie_hash.
type Hash struct {
	Header Opt[string] `yaml:"header"`
	Cookie Opt[string] `yaml:"cookie"`
}

// Sticky is the affinity cookie and session store settings of a route.
type Sticky struct {
	// Enabled turns affinity on (default true).
	Enabled Opt[bool] `yaml:"enabled"`
	// TTL is the sliding lifetime of a session without requests (default 30m).
	TTL Opt[time.Duration] `yaml:"ttl"`
	// Learn keys affinity on the application's own cookie of this name
	// (e.g. JSESSIONID) instead of issuing latch's cookie.
	Learn Opt[string] `yaml:"learn_cookie"`
	// Header keys affinity on this request header's value (gRPC metadata
	// such as x-session-id, an API's session header) instead of latch's
	// cookie: the same pin, re-pin and unpin, and no Set-Cookie; a request
	// without the header is balanced as a route without stickiness is.
	Header     Opt[string] `yaml:"header"`
	CookieName Opt[string] `yaml:"cookie_name"` // default "latch"
	Path       Opt[string] `yaml:"path"`        // default "/"
	Domain     Opt[string] `yaml:"domain"`      // default none (host-only)
	// MaxAge of the cookie; 0 (default) makes it a session cookie.
	MaxAge   Opt[time.Duration] `yaml:"max_age"`
	HTTPOnly Opt[bool]          `yaml:"http_only"` // default true
	SameSite Opt[string]        `yaml:"same_site"` // lax (default), strict, none
	// Secure: auto (default: when the request came over TLS or from a
	// trusted proxy saying X-Forwarded-Proto: https), always, never.
	Secure Opt[string] `yaml:"secure"`
}

// Breaker configures circuit breakers (see policy.BreakerSettings).
type Breaker struct {
	ConsecutiveFailures Opt[uint32]        `yaml:"consecutive_failures"` // default 5
	FailureRatio        Opt[float64]       `yaml:"failure_ratio"`        // default 0: consecutive mode
	MinRequests         Opt[uint32]        `yaml:"min_requests"`         // default 20
	Interval            Opt[time.Duration] `yaml:"interval"`             // default 10s
	OpenTimeout         Opt[time.Duration] `yaml:"open_timeout"`         // default 10s
	HalfOpenRequests    Opt[uint32]        `yaml:"half_open_requests"`   // default 1
	// FailureStatus are the response codes that count as failures (default 502, 503, 504).
	FailureStatus Opt[[]int] `yaml:"failure_status"`
}

// Retry configures retries on another backend. A request is retried only
// while nothing was written to the client, and a request body only when it
// was not read.
type Retry struct {
	// Attempts is the number of backends a request is sent to at most
	// (default 3; 1 = no retry). A backend whose breaker refuses the request
	// is skipped without using an attempt.
	Attempts Opt[int] `yaml:"attempts"`
	// OnStatus: an idempotent request answered with one of these codes is
	// tried once more on another backend, if another can take it (default
	// 502, 503, 504, as HAProxy's retry-on with redispatch; an explicit
	// empty list turns it off). Once only: when every backend answers 503,
	// the second answer reaches the client, so retries at most double the
	// load on an overloaded service.
	OnStatus Opt[[]int] `yaml:"on_status"`
	// IdempotentPaths are request paths whose requests may be sent again
	// as an idempotent method's are, whatever their method (default none):
	// gRPC calls are all POST, and a method safe to repeat is named here by
	// its path, /package.Service/Method. Exact matches.
	IdempotentPaths Opt[List] `yaml:"idempotent_paths"`
}

// HealthCheck is latch's own active health check of a route's backends:
// a GET of Path (kind http), or the gRPC health checking protocol's
// grpc.health.v1.Health/Check of GRPCService (kind grpc, for routes whose
// backends speak HTTP/2), in the route's backend protocol either way.
type HealthCheck struct {
	Kind               Opt[string]        `yaml:"kind"`                // http (default) or grpc
	Path               Opt[string]        `yaml:"path"`                // kind http; default empty: off
	GRPCService        Opt[string]        `yaml:"grpc_service"`        // kind grpc; default "": the server as a whole
	Interval           Opt[time.Duration] `yaml:"interval"`            // default 5s
	Timeout            Opt[time.Duration] `yaml:"timeout"`             // default 1s
	HealthyThreshold   Opt[int]           `yaml:"healthy_threshold"`   // default 2
	UnhealthyThreshold Opt[int]           `yaml:"unhealthy_threshold"` // default 3
}

// Health check kinds (HealthCheck.Kind).
const (
	CheckHTTP = "http"
	CheckGRPC = "grpc"
)

// Enabled reports whether the checks run: a path for kind http, always
// for kind grpc.
func (h HealthCheck) Enabled() bool { return h.Kind.Get() == CheckGRPC || h.Path.Get() != "" }
