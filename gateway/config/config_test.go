package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func parseYAML(t *testing.T, yaml string, args ...string) (Invocation, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latch.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(append([]string{"-config", path}, args...), env(nil), io.Discard)
}

// Every validation error names the field by its YAML path.
func TestConfigErrorsNameTheField(t *testing.T) {
	const route = "routes:\n  - service: web\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "listne: :80\n" + route, "listne: unknown field"},
		{"unknown nested key", "routes:\n  - service: web\n    sticky:\n      tll: 5m\n", "routes[0].sticky.tll: unknown field"},
		{"bad duration", "routes:\n  - service: web\n    sticky:\n      ttl: five\n", `routes[0].sticky.ttl: "five" is not a duration`},
		{"bad bool", "admin:\n  pprof: maybe\n" + route, `admin.pprof: "maybe" is not true or false`},
		{"bad int", "server:\n  max_header_bytes: lots\n" + route, `server.max_header_bytes: "lots" is not an integer`},
		{"list wanted", "routes: web\n", "routes: want a list"},
		{"listen", "listen: nope\n" + route, `listen: "nope" is not host:port`},
		{"admin listen", "admin:\n  listen: nope\n" + route, `admin.listen: "nope" is not host:port`},
		{"redis url", "redis:\n  url: http://x\n" + route, "redis.url: must be a redis://"},
		{"redis port", "redis:\n  url: redis://localhost:99999/0\n" + route, `redis.url: port "99999" of "localhost:99999" is not a number from 1 to 65535`},
		{"redis cluster port", "redis:\n  url: redis://a:6379,b:0\n" + route, `redis.url: port "0" of "b:0"`},
		{"redis timeout", "redis:\n  timeout: -1s\n" + route, "redis.timeout: must not be negative"},
		{"server implementation", "server:\n  implementation: h2\n" + route, `server.implementation: "h2" is not h1 or net/http`},
		{"max connections", "server:\n  max_connections: -1\n" + route, "server.max_connections: must not be negative"},
		{"max connections per ip", "server:\n  max_connections_per_ip: -2\n" + route, "server.max_connections_per_ip: must not be negative"},
		{"consul consistency", "consul:\n  consistency: eventual\n" + route, `consul.consistency: "eventual" is not stale, default or consistent`},
		{"consul tls pair", "consul:\n  tls:\n    cert_file: c.pem\n" + route, "consul.tls: cert_file and key_file go together"},
		{"consul token twice", "consul:\n  token: a\n  token_file: f\n" + route, "consul.token_file: set token or token_file"},
		{"empty grace", "discovery:\n  empty_grace: soon\n" + route, "discovery.empty_grace"},
		{"consul consistency", "consul:\n  consistency: eventual\n" + route, `consul.consistency: "eventual" is not stale, default or consistent`},
		{"consul tls pair", "consul:\n  tls:\n    cert_file: c.pem\n" + route, "consul.tls: cert_file and key_file go together"},
		{"consul token twice", "consul:\n  token: a\n  token_file: f\n" + route, "consul.token_file: set token or token_file"},
		{"empty grace", "discovery:\n  empty_grace: soon\n" + route, "discovery.empty_grace"},
		{"no secret with redis", "redis:\n  url: redis://127.0.0.1:6379/0\n" + route, "cookie.secrets: required with redis.url"},
		{"short secret", "cookie:\n  secrets: [short]\n" + route, "cookie.secrets[0]: must be at least 16 bytes"},
		{"placeholder secret", "cookie:\n  secrets: [change-me-to-32-random-bytes-please]\n" + route, "cookie.secrets[0]: is a published placeholder: set LATCH_COOKIE_SECRET"},
		{"log level", "log:\n  level: loud\n" + route, `log.level: "loud" is not one of`},
		{"log format", "log:\n  format: xml\n" + route, `log.format: "xml" is not text or json`},
		{"negative timeout", "server:\n  idle_timeout: -1s\n" + route, "server.idle_timeout: must not be negative"},
		{"header bytes", "server:\n  max_header_bytes: 10\n" + route, "server.max_header_bytes: must be at least 1024"},
		{"tracing endpoint", "tracing:\n  endpoint: 127.0.0.1:4318\n" + route, `tracing.endpoint: "127.0.0.1:4318" is not an http:// or https:// URL`},
		{"tracing protocol", "tracing:\n  protocol: http/json\n" + route, `tracing.protocol: "http/json" is not http/protobuf or grpc`},
		{"tracing sampler", "tracing:\n  sampler: sometimes\n" + route, `tracing.sampler: "sometimes" is not one of`},
		{"tracing sampler arg", "tracing:\n  sampler_arg: \"2\"\n" + route, `tracing.sampler_arg: "2" is not a ratio in [0, 1]`},
		{"tracing resource attributes", "tracing:\n  resource_attributes: a=1,b\n" + route, `tracing.resource_attributes: "b" is not key=value`},
		{"tracing unknown key", "tracing:\n  endpiont: http://x\n" + route, "tracing.endpiont: unknown field"},
		{"response header bytes", "transport:\n  max_response_header_bytes: 100\n" + route, "transport.max_response_header_bytes: must be at least 1024"},
		{"trusted proxy", "trusted_proxies: [not-an-ip]\n" + route, `trusted_proxies[0]: "not-an-ip" is not an address or CIDR`},
		{"no service", "routes:\n  - path_prefix: /api\n", "routes[0].service: is required"},
		{"path prefix", "routes:\n  - service: web\n    path_prefix: api\n", `routes[0].path_prefix: "api" must start with /`},
		{"host", "routes:\n  - service: web\n    host: a/b\n", `routes[0].host: "a/b" is not a host name`},
		{"duplicate route", "routes:\n  - service: a\n  - service: b\n", "routes[1]: same host and path_prefix as routes[0]"},
		{"static backend", "consul:\n  disabled: true\nroutes:\n  - service: web\n    backends: [nope]\n", `routes[0].backends[0]: "nope" is not host:port`},
		{"static required", "consul:\n  disabled: true\nroutes:\n  - service: web\n", "routes[0].backends: required when consul.disabled"},
		{"unknown policy", "routes:\n  - service: web\n    policy: [fastest]\n", "routes[0].policy: "},
		{"header hash", "routes:\n  - service: web\n    policy: [header_hash]\n", "routes[0].hash.header: required by policy header_hash"},
		{"cookie hash", "defaults:\n  policy: [cookie_hash]\n" + route, "defaults.hash.cookie: required by policy cookie_hash"},
		{"ttl", "routes:\n  - service: web\n    sticky:\n      ttl: 10ms\n", "routes[0].sticky.ttl: must be at least 1s"},
		{"cookie name", "routes:\n  - service: web\n    sticky:\n      cookie_name: \"a b\"\n", `routes[0].sticky.cookie_name: "a b" is not a valid cookie name`},
		{"learn cookie", "routes:\n  - service: web\n    sticky:\n      learn_cookie: \"x;y\"\n", `routes[0].sticky.learn_cookie`},
		{"cookie path", "routes:\n  - service: web\n    sticky:\n      path: x\n", "routes[0].sticky.path"},
		{"same site", "routes:\n  - service: web\n    sticky:\n      same_site: sometimes\n", `routes[0].sticky.same_site: "sometimes"`},
		{"secure", "routes:\n  - service: web\n    sticky:\n      secure: maybe\n", `routes[0].sticky.secure: "maybe"`},
		{"max age", "routes:\n  - service: web\n    sticky:\n      max_age: -1s\n", "routes[0].sticky.max_age: must not be negative"},
		{"breaker ratio", "routes:\n  - service: web\n    breaker:\n      failure_ratio: 2\n", "routes[0].breaker: "},
		{"failure status", "routes:\n  - service: web\n    breaker:\n      failure_status: [700]\n", "routes[0].breaker.failure_status[0]: 700 is not an HTTP status"},
		{"retry attempts", "routes:\n  - service: web\n    retry:\n      attempts: 50\n", "routes[0].retry.attempts: 50 is not in [1, 10]"},
		{"retry status", "routes:\n  - service: web\n    retry:\n      on_status: [404]\n", "routes[0].retry.on_status[0]: 404 is not a 5xx status"},
		{"check path", "routes:\n  - service: web\n    health_check:\n      path: health\n", `routes[0].health_check.path: "health" must start with /`},
		{"check interval", "routes:\n  - service: web\n    health_check:\n      path: /h\n      interval: 1ms\n", "routes[0].health_check.interval: must be at least 100ms"},
		{"check timeout", "routes:\n  - service: web\n    health_check:\n      path: /h\n      interval: 1s\n      timeout: 2s\n", "routes[0].health_check.timeout"},
		{"slow start", "routes:\n  - service: web\n    slow_start: -1s\n", "routes[0].slow_start: must not be negative"},
		{"no routes", "consul:\n  routes_from_tags: false\n", "routes: no routes"},
		{"acme without domains", "tls:\n  acme:\n    email: a@example.com\n" + route, "tls.acme.domains: required (or route_hosts: true)"},
		{"acme domain", "tls:\n  acme:\n    domains: [example.com, \"*.example.com\"]\n" + route, `tls.acme.domains[1]: "*.example.com" is not a DNS name`},
		{"acme ip", "tls:\n  acme:\n    domains: [127.0.0.1]\n" + route, `tls.acme.domains[0]: "127.0.0.1" is not a DNS name`},
		{"acme email", "tls:\n  acme:\n    domains: [example.com]\n    email: nobody\n" + route, `tls.acme.email: "nobody" is not an email address`},
		{"acme ca", "tls:\n  acme:\n    domains: [example.com]\n    ca: http://ca.example/dir\n" + route, `tls.acme.ca: "http://ca.example/dir" is not an https:// URL`},
		{"acme redis storage", "tls:\n  acme:\n    route_hosts: true\n    storage: redis\n" + route, "tls.acme.storage: redis needs redis.url"},
		{"acme challenge", "tls:\n  acme:\n    domains: [example.com]\n    challenges: [dns-01]\n" + route, `tls.acme.challenges[0]: "dns-01" is not http-01 or tls-alpn-01`},
		{"acme no challenge", "tls:\n  acme:\n    domains: [example.com]\n    challenges: []\n" + route, "tls.acme.challenges: must name"},
		{"h2c over tls", "server:\n  h2c: true\ntls:\n  acme:\n    domains: [example.com]\n" + route, "server.h2c: is HTTP/2 without TLS"},
		{"h2c not bool", "server:\n  h2c: yes please\n" + route, `server.h2c: "yes please" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseYAML(t, tt.yaml)
			if err == nil {
				t.Fatalf("config accepted; want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

func TestConfigDefaultsAndInheritance(t *testing.T) {
	inv, err := parseYAML(t, `
defaults:
  policy: least_response_time, round_robin
  sticky:
    ttl: 10m
routes:
  - service: web
  - service: api
    host: API.example.com
    path_prefix: /v1/
    sticky:
      ttl: 1m
      enabled: false
`)
	if err != nil {
		t.Fatal(err)
	}
	c := inv.Config.Config()
	if c.Listen != ":8080" || c.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("listeners = %q, %q; want the documented defaults", c.Listen, c.Admin.Listen)
	}
	web, api := c.Routes[0], c.Routes[1]
	if got := strings.Join(web.Policy.Get(), ","); got != "least_response_time,round_robin" {
		t.Errorf("web policy = %s; want the defaults' chain", got)
	}
	if web.Sticky.TTL.Get() != 10*time.Minute || api.Sticky.TTL.Get() != time.Minute {
		t.Errorf("ttl web=%v api=%v; want 10m inherited and 1m own", web.Sticky.TTL, api.Sticky.TTL)
	}
	if !web.Sticky.Enabled.Get() || api.Sticky.Enabled.Get() {
		t.Errorf("sticky web=%v api=%v; want true (default) and false", web.Sticky.Enabled.Get(), api.Sticky.Enabled.Get())
	}
	if web.Name != "web" || web.PathPrefix != "/" || web.Sticky.CookieName.Get() != "latch" || !web.Sticky.HTTPOnly.Get() {
		t.Errorf("route defaults not applied: %+v", web)
	}
	if web.Breaker.ConsecutiveFailures.Get() != 5 || web.Retry.Attempts.Get() != 3 || len(web.Breaker.FailureStatus.Get()) != 3 {
		t.Errorf("breaker/retry defaults not applied: %+v %+v", web.Breaker, web.Retry)
	}
}

// Flags beat environment variables, which beat the file.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.yaml")
	if err := os.WriteFile(path, []byte("listen: \":1000\"\nlog:\n  level: warn\nroutes:\n  - service: web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{
		EnvConfig: path, EnvListen: ":2000", EnvAdminListen: "127.0.0.1:3000",
		EnvRedisURL: "redis://127.0.0.1:1/0", EnvCookieSecret: "0123456789abcdef,fedcba9876543210",
		EnvPolicy: "random", EnvConsulRoutes: "false", EnvAdminToken: "tok",
	})
	inv, err := Load([]string{"-admin-listen", "127.0.0.1:4000"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := inv.Config.Config()
	checks := []struct{ name, got, want string }{
		{"listen (env over file)", c.Listen, ":2000"},
		{"admin listen (flag over env)", c.Admin.Listen, "127.0.0.1:4000"},
		{"log level (file)", c.Log.Level, "warn"},
		{"redis (env)", c.Redis.URL, "redis://127.0.0.1:1/0"},
		{"secrets (env list)", strings.Join(c.Cookie.Secrets, "|"), "0123456789abcdef|fedcba9876543210"},
		{"policy (env)", strings.Join(c.Routes[0].Policy.Get(), ","), "random"},
		{"admin token (env)", c.Admin.Token, "tok"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q; want %q", ch.name, ch.got, ch.want)
		}
	}
	if c.Consul.RoutesFromTags.Get() {
		t.Error("consul routes: env false ignored")
	}
}

func TestFlagsSingleServiceAndStatic(t *testing.T) {
	inv, err := Load([]string{"-service", "web", "-backends", "127.0.0.1:1,127.0.0.1:2"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := inv.Config.Config().Routes[0]
	if r.Service != "web" || r.PathPrefix != "/" || len(r.Backends) != 2 || !inv.Config.Config().Consul.Disabled {
		t.Fatalf("route %+v disabled=%v; want web at / with 2 static backends and Consul off", r, inv.Config.Config().Consul.Disabled)
	}
	for _, args := range [][]string{
		{"-backends", "127.0.0.1:1"},               // needs -service
		{"-service", "web", "-consul-routes", "x"}, // not a bool
		{"-service", "web", "-nope"},               // unknown flag
		{"-service", "web", "extra"},               // stray argument
	} {
		if _, err := Load(args, env(nil), io.Discard); err == nil {
			t.Errorf("Load(%q) accepted", args)
		}
	}
}

func TestRoutesFromTags(t *testing.T) {
	base, err := Config{Consul: Consul{RoutesFromTags: Set(true)}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tags    []string
		want    []string // host+prefix of each route
		wantErr string
	}{
		{"no latch tags", []string{"v1", "primary"}, nil, ""},
		{"path", []string{"latch.route=/api"}, []string{"/api"}, ""},
		{"host only", []string{"latch.host=shop.example.com"}, []string{"shop.example.com/"}, ""},
		{"two paths with host", []string{"latch.route=/b", "latch.route=/a", "latch.host=h"}, []string{"h/a", "h/b"}, ""},
		{"bad sticky", []string{"latch.route=/x", "latch.sticky=perhaps"}, nil, `tag "latch.sticky=perhaps"`},
		{"bad policy", []string{"latch.route=/x", "latch.policy=fastest"}, nil, "policy"},
		{"bad path", []string{"latch.route=x"}, nil, "path_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, err := base.RoutesFromTags("svc", tt.tags)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range routes {
				got = append(got, r.Route().Host+r.Route().PathPrefix)
				if r.Service() != "svc" || !r.FromTags() || len(r.Route().Policy.Get()) == 0 {
					t.Errorf("route %+v: want service svc from tags with a policy", r.Route())
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("routes %q; want %q", got, tt.want)
			}
		})
	}
	rs, _ := base.RoutesFromTags("svc", []string{"latch.route=/x", "latch.sticky=false", "latch.policy=random,p2c", "latch.strip_prefix=true"})
	r := rs[0].Route()
	if r.Sticky.Enabled.Get() || strings.Join(r.Policy.Get(), ",") != "random,p2c" || !r.StripPrefix {
		t.Fatalf("tag options not applied: %+v", r)
	}
}

// ACME's defaults: Let's Encrypt, both challenges, Redis storage when
// latch has Redis; off when nothing names a domain.
func TestACMEDefaults(t *testing.T) {
	inv, err := parseYAML(t, "redis:\n  url: redis://127.0.0.1:6379\ncookie:\n  secrets: [0123456789abcdef]\ntls:\n  acme:\n    domains: [a.example.com]\nroutes:\n  - service: web\n")
	if err != nil {
		t.Fatal(err)
	}
	a := inv.Config.Config().TLS.ACME
	if !a.Enabled() || a.CA != DefaultACMECA || a.Storage != "redis" ||
		strings.Join(a.Challenges.Get(), ",") != "http-01,tls-alpn-01" {
		t.Errorf("acme defaults: %+v", a)
	}
	inv, err = parseYAML(t, "routes:\n  - service: web\n")
	if err != nil {
		t.Fatal(err)
	}
	if a := inv.Config.Config().TLS.ACME; a.Enabled() || a.CA != "" || a.Storage != "" {
		t.Errorf("acme without domains: %+v", a)
	}
}

// Issue 17: with a shared store, a random secret per replica is chosen
// explicitly or not at all; a secret or a secret file will do.
func TestSecretWithSharedStore(t *testing.T) {
	const base = "redis:\n  url: redis://127.0.0.1:6379/0\nroutes:\n  - service: web\n"
	for _, extra := range []string{
		"cookie:\n  ephemeral: true\n",
		"cookie:\n  secrets: [0123456789abcdef]\n",
		"cookie:\n  secret_file: /var/lib/latch/cookie-secret\n",
	} {
		if _, err := parseYAML(t, base+extra); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}
