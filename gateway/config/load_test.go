package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A syntax error names the line where the file stops being YAML, not the
// line where the enclosing block began (yaml.v3 reports that one).
func TestSyntaxErrorLine(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bad indent", "listen: \":80\"\nroutes:\n  - service: web\n   host: x\n", "line 4:"},
		{"tab", "routes:\n  - service: web\n\tfoo: 1\n", "line 3:"},
		{"unclosed list", "a: 1\nb: 2\nc: [1, 2\n", "line 3:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v; want it to start with %q", err, tt.want)
			}
		})
	}
}

// Type errors carry the field's path and its own line.
func TestTypeErrorLine(t *testing.T) {
	_, err := Parse([]byte("listen: \":80\"\nroutes:\n  - service: web\n    sticky:\n      ttl: five\n"))
	if err == nil || !strings.Contains(err.Error(), `routes[0].sticky.ttl: "five" is not a duration such as 30s or 5m (line 5)`) {
		t.Fatalf("error %v; want the path, the message and line 5", err)
	}
}

// A bad environment value is reported once, under the variable's name (a
// flag's under the flag's).
func TestEnvErrorNamesTheVariable(t *testing.T) {
	_, err := Load([]string{"-service", "web"}, env(map[string]string{EnvConsulRoutes: "maybe"}), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, EnvConsulRoutes+`: "maybe" is not true or false`) || strings.Count(msg, "maybe") != 1 ||
		strings.Contains(msg, "routes_from_tags") {
		t.Fatalf("error %q; want it once, under %s", msg, EnvConsulRoutes)
	}
	_, err = Load([]string{"-service", "web", "-pprof", "x"}, env(nil), io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), `-pprof: "x" is not true or false`) {
		t.Fatalf("error %v; want it under -pprof", err)
	}
}

// A route can set a zero (or an empty list) under defaults that set
// something else: unset inherits, zero is zero.
func TestUnsetDiffersFromZero(t *testing.T) {
	inv, err := parseYAML(t, `
defaults:
  timeout: 30s
  slow_start: 10s
  breaker:
    failure_ratio: 0.5
  retry:
    on_status: [502, 503]
routes:
  - service: inherits
  - service: zeroes
    path_prefix: /z
    timeout: 0s
    slow_start: 0s
    breaker:
      failure_ratio: 0
    retry:
      on_status: []
`)
	if err != nil {
		t.Fatal(err)
	}
	rs := inv.Config.Routes()
	in, z := rs[0].Route(), rs[1].Route()
	if in.Timeout.Get() != 30*time.Second || in.SlowStart.Get() != 10*time.Second ||
		in.Breaker.FailureRatio.Get() != 0.5 || len(in.Retry.OnStatus.Get()) != 2 {
		t.Errorf("inheriting route: %+v; want the defaults", in.RouteSettings)
	}
	if z.Timeout.Get() != 0 || z.SlowStart.Get() != 0 || z.Breaker.FailureRatio.Get() != 0 ||
		len(z.Retry.OnStatus.Get()) != 0 || rs[1].RetriesOn(502) {
		t.Errorf("zeroing route: %+v; want its zeroes kept", z.RouteSettings)
	}
}

// A Compiled config's Config compiles again to the same thing.
func TestCompileIdempotent(t *testing.T) {
	inv, err := parseYAML(t, "routes:\n  - service: web\n    sticky:\n      ttl: 5m\n")
	if err != nil {
		t.Fatal(err)
	}
	again, err := inv.Config.Config().Compile()
	if err != nil {
		t.Fatal(err)
	}
	if again.Routes()[0].Route().Sticky.TTL.Get() != 5*time.Minute {
		t.Fatal("recompiling lost a setting")
	}
}

// The default and the way to turn it off, as a config file says them.
func TestRetryOnStatusConfig(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want []int
	}{
		{"routes:\n  - service: web\n", []int{502, 503, 504}},
		{"routes:\n  - service: web\n    retry:\n      on_status: []\n", []int{}},
		{"defaults:\n  retry:\n    on_status: []\nroutes:\n  - service: web\n", []int{}},
		{"defaults:\n  retry:\n    on_status: [503]\nroutes:\n  - service: web\n", []int{503}},
	} {
		inv, err := parseYAML(t, tt.yaml)
		if err != nil {
			t.Fatal(err)
		}
		if got := inv.Config.Routes()[0].Route().Retry.OnStatus.Get(); got == nil || !slices.Equal(got, tt.want) {
			t.Errorf("%q: on_status %v; want %v", tt.yaml, got, tt.want)
		}
	}
}

// metrics.listen and log.access_file come from the file, the environment
// or a flag, later ones winning; a bad metrics address is named.
func TestMetricsListenAndAccessFileLayering(t *testing.T) {
	path := t.TempDir() + "/latch.yaml"
	yaml := "metrics:\n  listen: \"127.0.0.1:9101\"\nlog:\n  access_file: /var/log/a.log\nroutes:\n  - service: web\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(e map[string]string, args ...string) Config {
		t.Helper()
		inv, err := Load(append([]string{"-config", path}, args...), env(e), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return inv.Config.Config()
	}
	if c := load(nil); c.Metrics.Listen != "127.0.0.1:9101" || c.Log.AccessFile != "/var/log/a.log" {
		t.Fatalf("from the file: %q %q", c.Metrics.Listen, c.Log.AccessFile)
	}
	e := map[string]string{EnvMetricsListen: ":9102", EnvAccessLogFile: "/tmp/b.log"}
	if c := load(e); c.Metrics.Listen != ":9102" || c.Log.AccessFile != "/tmp/b.log" {
		t.Fatalf("from the environment: %q %q", c.Metrics.Listen, c.Log.AccessFile)
	}
	if c := load(e, "-metrics-listen", ":9103"); c.Metrics.Listen != ":9103" {
		t.Fatalf("from the flag: %q", c.Metrics.Listen)
	}
	if c := (Config{}); c.Metrics.Listen != "" {
		t.Fatal("metrics listener on by default")
	}
	_, err := Load([]string{"-service", "web", "-metrics-listen", "nope"}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `metrics.listen: "nope" is not host:port`) {
		t.Fatalf("error %v; want it named metrics.listen", err)
	}
}

// A validation error points at what the user wrote: the file and the
// field's line, a route by its index in the file (the route -service adds
// is not counted: issue 29 saw "routes[1]: same host and path_prefix as
// routes[0]" for a file's first route), the flag route by its flag, and a
// field a flag or variable set by that flag or variable.
func TestConfigErrorsPointAtTheFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		yaml string
		want string // the whole error; FILE is the file's path
	}{
		{"file route same as the flag's", []string{"-service", "web"}, nil,
			"routes:\n  - service: web\n  - service: web\n    path_prefix: /static\n",
			"FILE: routes[0]: same host and path_prefix as -service web (line 2)"},
		{"file route same as the variable's", nil, map[string]string{EnvService: "web"},
			"routes:\n  - service: web\n",
			"FILE: routes[0]: same host and path_prefix as LATCH_SERVICE=web (line 2)"},
		{"two file routes after the flag's", []string{"-service", "web"}, nil,
			"routes:\n  - service: a\n    path_prefix: /a\n  - service: b\n    path_prefix: /a\n",
			"FILE: routes[1]: same host and path_prefix as routes[0] (line 4)"},
		{"a route's setting counted in the file", []string{"-service", "web"}, nil,
			"routes:\n  - service: a\n    path_prefix: /a\n  - service: b\n    path_prefix: /b\n    sticky:\n      ttl: 10ms\n",
			"FILE: routes[1].sticky.ttl: must be at least 1s (line 7)"},
		{"a setting the route does not write: the route's line", nil, nil,
			"listen: \":80\"\nroutes:\n  - service: a\n    policy: [header_hash]\n",
			"FILE: routes[0].hash.header: required by policy header_hash (line 3)"},
		{"top-level field", nil, nil,
			"routes:\n  - service: a\nlisten: nope\n",
			`FILE: listen: "nope" is not host:port (line 3)`},
		{"field a flag set over the file", []string{"-listen", "nope"}, nil,
			"listen: \":80\"\nroutes:\n  - service: a\n",
			`-listen: listen: "nope" is not host:port`},
		{"field a variable set over the file", nil, map[string]string{EnvLogLevel: "loud"},
			"log:\n  level: info\nroutes:\n  - service: a\n",
			`LATCH_LOG_LEVEL: log.level: "loud" is not one of debug, info, warn, error`},
		{"the flag route's own error", []string{"-service", "web", "-backends", "nope"}, nil,
			"listen: \":80\"\n",
			`-service web: backends[0]: "nope" is not host:port`},
		{"missing CA file", []string{"-service", "web"}, nil,
			"routes:\n  - service: a\n    path_prefix: /a\n    backend_tls:\n      enabled: true\n      ca_file: /nonexistent/ca.pem\n",
			"FILE: routes[0].backend_tls.ca_file: open /nonexistent/ca.pem: no such file or directory (line 6)"},
		{"no routes in the file", nil, nil,
			"consul:\n  routes_from_tags: false\n",
			"FILE: routes: no routes: set -service, list routes, or enable consul.routes_from_tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latch.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(append([]string{"-config", path}, tt.args...), env(tt.env), io.Discard)
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err == nil || err.Error() != want {
				t.Fatalf("error\n  %v\nwant\n  %s", err, want)
			}
		})
	}
}

// The tracing: settings come from the file or the standard OTEL_*
// variables, the variable winning; an error in a variable names it.
func TestTracingLayering(t *testing.T) {
	path := t.TempDir() + "/latch.yaml"
	yaml := "tracing:\n  endpoint: http://127.0.0.1:4318\n  sampler: traceidratio\n  sampler_arg: \"0.5\"\n" +
		"  service_name: edge\nroutes:\n  - service: web\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(e map[string]string) (Tracing, error) {
		t.Helper()
		inv, err := Load([]string{"-config", path}, env(e), io.Discard)
		if err != nil {
			return Tracing{}, err
		}
		return inv.Config.Config().Tracing, nil
	}
	tests := []struct {
		name string
		env  map[string]string
		want Tracing
	}{
		{"file", nil, Tracing{Endpoint: "http://127.0.0.1:4318", Sampler: "traceidratio", SamplerArg: "0.5", ServiceName: "edge"}},
		{"environment wins", map[string]string{
			EnvOTLPEndpoint: "http://collector:4317", EnvOTLPProtocol: "grpc", EnvServiceName: "latch-a",
			EnvTracesSampler: "parentbased_traceidratio", EnvTracesSamplerArg: "0.01", EnvResourceAttributes: "deployment.environment=prod",
		}, Tracing{Endpoint: "http://collector:4317", Protocol: "grpc", ServiceName: "latch-a", Sampler: "parentbased_traceidratio",
			SamplerArg: "0.01", ResourceAttributes: "deployment.environment=prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("tracing %+v; want %+v", got, tt.want)
			}
		})
	}
	if (Config{}).Tracing.Endpoint != "" {
		t.Fatal("tracing on by default")
	}
	_, err := load(map[string]string{EnvTracesSampler: "sometimes"})
	if err == nil || !strings.Contains(err.Error(), EnvTracesSampler) || !strings.Contains(err.Error(), "tracing.sampler") {
		t.Fatalf("error %v; want it to name tracing.sampler and %s", err, EnvTracesSampler)
	}
}
