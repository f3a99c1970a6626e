package config

import (
	"strings"
	"testing"
)

// backend_protocol: errors name the field; h2 needs backend_tls and h2c
// refuses it; the latch.backend_protocol tag sets it for routes from tags.
func TestBackendProtocol(t *testing.T) {
	const route = "routes:\n  - service: web\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown", route + "    backend_protocol: h3\n", `routes[0].backend_protocol: "h3" is not h1, h2c or h2`},
		{"h2 without tls", route + "    backend_protocol: h2\n", "routes[0].backend_protocol: h2 needs backend_tls.enabled"},
		{"h2c with tls", route + "    backend_protocol: h2c\n    backend_tls:\n      enabled: true\n", "routes[0].backend_protocol: h2c is plain TCP"},
		{"defaults", "defaults:\n  backend_protocol: http2\n" + route, `defaults.backend_protocol: "http2" is not h1, h2c or h2`},
		{"check kind", route + "    health_check:\n      kind: tcp\n", `routes[0].health_check.kind: "tcp" is not http or grpc`},
		{"grpc check over h1", route + "    health_check:\n      kind: grpc\n", "routes[0].health_check.kind: grpc needs backend_protocol h2c or h2"},
		{"grpc check with a path", route + "    backend_protocol: h2c\n    health_check:\n      kind: grpc\n      path: /healthz\n", "routes[0].health_check.path: a path is for kind http"},
		{"sticky header name", route + "    sticky:\n      header: \"x session\"\n", `routes[0].sticky.header: "x session" is not a valid header name`},
		{"sticky header and learn_cookie", route + "    sticky:\n      header: x-session-id\n      learn_cookie: JSESSIONID\n", "routes[0].sticky.header: a session is keyed on a header or on learn_cookie, not both"},
		{"idempotent path", route + "    retry:\n      idempotent_paths: [pkg.Svc/Get]\n", `routes[0].retry.idempotent_paths[0]: "pkg.Svc/Get" must start with /`},
		{"grpc check interval", route + "    backend_protocol: h2c\n    health_check:\n      kind: grpc\n      interval: 1ms\n", "routes[0].health_check.interval: must be at least 100ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseYAML(t, c.yaml)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error containing %q", err, c.want)
			}
		})
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"default h1", route, ProtocolH1},
		{"h2c", route + "    backend_protocol: h2c\n", ProtocolH2C},
		{"h2 over tls", route + "    backend_protocol: h2\n    backend_tls:\n      enabled: true\n", ProtocolH2},
		{"inherited", "defaults:\n  backend_protocol: h2c\n" + route, ProtocolH2C},
	} {
		t.Run(c.name, func(t *testing.T) {
			inv, err := parseYAML(t, c.yaml)
			if err != nil {
				t.Fatal(err)
			}
			s := inv.Config.Routes()[0]
			if s.BackendProtocol() != c.want || s.HTTP2() != (c.want != ProtocolH1) {
				t.Fatalf("backend protocol %q (HTTP2 %v); want %q", s.BackendProtocol(), s.HTTP2(), c.want)
			}
		})
	}

	inv, err := parseYAML(t, route)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tags []string
		want string // protocol, or "error"
	}{
		{"h2c", []string{"latch.route=/g", "latch.backend_protocol=h2c"}, ProtocolH2C},
		{"h2 with tls", []string{"latch.route=/g", "latch.backend_tls=true", "latch.backend_protocol=h2"}, ProtocolH2},
		{"h2 without tls", []string{"latch.route=/g", "latch.backend_protocol=h2"}, "error"},
		{"unknown", []string{"latch.route=/g", "latch.backend_protocol=grpc"}, "error"},
	} {
		t.Run("tag "+c.name, func(t *testing.T) {
			specs, err := inv.Config.RoutesFromTags("svc", c.tags)
			if c.want == "error" {
				if err == nil || !strings.Contains(err.Error(), "backend_protocol") {
					t.Fatalf("got %v, %v; want an error naming backend_protocol", specs, err)
				}
				return
			}
			if err != nil || len(specs) != 1 || specs[0].BackendProtocol() != c.want {
				t.Fatalf("got %v, %v; want one route speaking %s", specs, err, c.want)
			}
		})
	}
}

func TestHealthCheckEnabled(t *testing.T) {
	for _, c := range []struct {
		name string
		h    HealthCheck
		want bool
	}{
		{"http without a path", HealthCheck{Kind: Set(CheckHTTP), Path: Set("")}, false},
		{"http with a path", HealthCheck{Kind: Set(CheckHTTP), Path: Set("/healthz")}, true},
		{"grpc", HealthCheck{Kind: Set(CheckGRPC), Path: Set("")}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.h.Enabled(); got != c.want {
				t.Fatalf("Enabled() = %v; want %v", got, c.want)
			}
		})
	}
}
