package config

import "reflect"

// NeedsRestart lists the settings that differ between c (the config
// at start) and next and that a running latch cannot change: a reload
// reports them as needing a restart and applies the rest.
func (c Config) NeedsRestart(next Config) []string {
	out := []string{}
	for _, f := range []struct {
		name          string
		running, next any
	}{
		{"listen", c.Listen, next.Listen},
		{"admin", c.Admin, next.Admin},
		{"metrics.listen", c.Metrics, next.Metrics},
		{"consul", c.Consul, next.Consul},
		{"discovery", c.Discovery, next.Discovery},
		{"redis", c.Redis, next.Redis},
		{"cookie.secret_file", c.Cookie.SecretFile, next.Cookie.SecretFile},
		{"cookie.ephemeral", c.Cookie.Ephemeral, next.Cookie.Ephemeral},
		{"log", c.Log, next.Log},
		{"server", c.Server, next.Server},
		{"transport", c.Transport, next.Transport},
		{"trusted_proxies", c.TrustedProxies, next.TrustedProxies},
		{"tracing", c.Tracing, next.Tracing}, // the tracer provider is built once
		// Certificates reload live; giving some or none (with tls.acme off:
		// turning TLS on or off), tls.acme (its manager is built once), and
		// the rest of tls (the listener's TLS config, the redirect listener)
		// do not.
		{"tls.certificates (TLS on or off)", len(c.TLS.Certificates) > 0, len(next.TLS.Certificates) > 0},
		{"tls.acme", c.TLS.ACME, next.TLS.ACME},
		{"tls", tlsSettings(c.TLS), tlsSettings(next.TLS)},
	} {
		if !reflect.DeepEqual(f.running, f.next) {
			out = append(out, f.name)
		}
	}
	return out
}

// tlsSettings is t without its certificates and tls.acme (reported apart).
func tlsSettings(t TLS) TLS {
	t.Certificates, t.ACME = nil, ACME{}
	return t
}
