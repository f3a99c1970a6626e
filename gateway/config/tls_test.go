package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TLS settings: errors name the field; backend_tls's CA file is read at
// Compile; the latch.backend_tls tag turns it on for routes from tags.
func TestTLSConfig(t *testing.T) {
	const route = "routes:\n  - service: web\n"
	const certs = "tls:\n  certificates:\n    - {cert_file: c.pem, key_file: k.pem}\n"
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"pair", "tls:\n  certificates:\n    - {cert_file: c.pem}\n" + route, "tls.certificates[0]: cert_file and key_file are both required"},
		{"min version", certs + "  min_version: \"1.1\"\n" + route, `tls.min_version: "1.1" is not 1.2 or 1.3`},
		{"redirect without TLS", "tls:\n  redirect_listen: \":80\"\n" + route, "tls.redirect_listen: redirects to HTTPS, which needs tls.certificates"},
		{"redirect address", certs + "  redirect_listen: eighty\n" + route, `tls.redirect_listen: "eighty" is not host:port`},
		{"hsts", certs + "  hsts:\n    preload: true\n" + route, "tls.hsts.max_age: required by include_subdomains and preload"},
		{"ca file missing", route + "    backend_tls:\n      enabled: true\n      ca_file: " + filepath.Join(dir, "none.pem") + "\n", "routes[0].backend_tls.ca_file: open"},
		{"ca file not PEM", "defaults:\n  backend_tls:\n    ca_file: " + notPEM + "\n" + route, "defaults.backend_tls.ca_file: " + notPEM + " holds no PEM certificate"},
		{"server name", route + "    backend_tls:\n      server_name: a:1\n", `routes[0].backend_tls.server_name: "a:1" is not a host name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseYAML(t, c.yaml)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error containing %q", err, c.want)
			}
		})
	}

	inv, err := parseYAML(t, certs+route)
	if err != nil {
		t.Fatal(err)
	}
	tc := inv.Config.Config().TLS
	if tc.MinVersion != "1.2" || tc.PollInterval.Get().String() != "2s" || !tc.Enabled() {
		t.Fatalf("defaults: %+v; want min_version 1.2, poll_interval 2s", tc)
	}
	// tls.acme alone turns TLS on, and with it the redirect listener.
	acmeOnly, err := parseYAML(t, "tls:\n  redirect_listen: \":80\"\n  acme:\n    domains: [shop.example.com]\n"+route)
	if err != nil {
		t.Fatalf("tls.acme with redirect_listen and no certificates: %v", err)
	}
	if !acmeOnly.Config.Config().TLS.Enabled() {
		t.Fatal("tls.acme without certificates: TLS off")
	}
	if inv.Config.Routes()[0].BackendTLS() != nil {
		t.Fatal("backend TLS on by default")
	}
	specs, err := inv.Config.RoutesFromTags("api", []string{"latch.route=/api", "latch.backend_tls=true"})
	if err != nil || len(specs) != 1 || specs[0].BackendTLS() == nil {
		t.Fatalf("latch.backend_tls=true: %v, %v; want a route with backend TLS", specs, err)
	}
	again, _ := inv.Config.RoutesFromTags("api", []string{"latch.route=/v2", "latch.backend_tls=true"})
	if again[0].BackendTLS() != specs[0].BackendTLS() {
		t.Fatal("two routes with the same backend_tls got two TLS configs (and would get two connection pools)")
	}
	if _, err := inv.Config.RoutesFromTags("api", []string{"latch.route=/api", "latch.backend_tls=yes please"}); err == nil {
		t.Fatal("a bad latch.backend_tls tag was accepted")
	}
}
