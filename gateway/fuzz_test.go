package gateway

import (
	"strings"
	"testing"
)

// FuzzParseConfigYAML: any bytes either parse or fail with an error; never
// a panic, and a config that parses and validates validates again.
func FuzzParseConfigYAML(f *testing.F) {
	f.Add([]byte("routes:\n  - service: web\n"))
	f.Add([]byte("listen: \":80\"\nroutes:\n  - service: web\n    sticky:\n      ttl: 5m\n"))
	f.Add([]byte("defaults:\n  policy: p2c, round_robin\nroutes: [{service: a, host: x, path_prefix: /a}]\n"))
	f.Add([]byte("routes: &a [*a]\n"))
	f.Add([]byte("server: {max_header_bytes: 0x10000}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfigYAML(data)
		if err != nil {
			return
		}
		cfg.SetDefaults()
		if cfg.Validate() != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("valid config became invalid on a second Validate: %v", err)
		}
	})
}

// FuzzRouteMatch: a matched route's prefix always covers the path on a
// segment boundary, and stripping keeps the path rooted.
func FuzzRouteMatch(f *testing.F) {
	f.Add("shop.example.com", "/api/v1/cart")
	f.Add("SHOP.EXAMPLE.COM:443", "/apix")
	f.Add("[::1]:80", "/")
	f.Add("", "")
	mk := func(host, prefix string) *route {
		r := newRoute(defaultedRoute(Route{Service: "s" + prefix, Host: host, PathPrefix: prefix, StripPrefix: true}), nil)
		return r
	}
	tbl := newTable([]*route{mk("", "/"), mk("", "/api"), mk("", "/api/v1/"), mk("shop.example.com", "/api")})
	f.Fuzz(func(t *testing.T, host, path string) {
		rt := tbl.match(host, path)
		if rt == nil {
			t.Fatalf("no route for %q %q despite a catch-all", host, path)
		}
		if rt.prefix != "/" {
			if !strings.HasPrefix(path, rt.prefix) || (len(path) > len(rt.prefix) && path[len(rt.prefix)] != '/') {
				t.Fatalf("route %q matched %q off a segment boundary", rt.prefix, path)
			}
		}
		if s := rt.stripPrefix(path); rt.prefix != "/" && !strings.HasPrefix(s, "/") {
			t.Fatalf("stripPrefix(%q) = %q: not rooted", path, s)
		}
	})
}
