package config

import (
	"slices"
	"testing"
	"time"
)

// A reload reports as needing a restart exactly the settings a running
// latch cannot change: not routes, not which certificate files (they
// reload live), but turning TLS on or off and the rest of tls.
func TestNeedsRestart(t *testing.T) {
	base := Config{Listen: ":8080", TLS: TLS{Certificates: []Certificate{{CertFile: "a.pem", KeyFile: "a.key"}}}}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, []string{}},
		{"routes", func(c *Config) { c.Routes = []Route{{Name: "web", Service: "web"}} }, []string{}},
		{"other certificate files", func(c *Config) {
			c.TLS.Certificates = []Certificate{{CertFile: "b.pem", KeyFile: "b.key"}}
		}, []string{}},
		{"listen", func(c *Config) { c.Listen = ":9000" }, []string{"listen"}},
		{"TLS off", func(c *Config) { c.TLS.Certificates = nil }, []string{"tls.certificates (TLS on or off)"}},
		{"hsts", func(c *Config) { c.TLS.HSTS.MaxAge = time.Hour }, []string{"tls"}},
		{"acme and log", func(c *Config) { c.TLS.ACME.Email = "ops@example.com"; c.Log.Level = "debug" }, []string{"log", "tls.acme"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			next := base
			next.TLS.Certificates = slices.Clone(base.TLS.Certificates)
			c.change(&next)
			if got := base.NeedsRestart(next); !slices.Equal(got, c.want) {
				t.Fatalf("NeedsRestart = %q; want %q", got, c.want)
			}
		})
	}
}
