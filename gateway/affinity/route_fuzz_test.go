package affinity

import (
	"strings"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// FuzzRouteMatch: a matched route's prefix always covers the path on a
// segment boundary, and stripping keeps the path rooted.
func FuzzRouteMatch(f *testing.F) {
	f.Add("shop.example.com", "/api/v1/cart")
	f.Add("SHOP.EXAMPLE.COM:443", "/apix")
	f.Add("[::1]:80", "/")
	f.Add("", "")
	mk := func(host, prefix string) *Route {
		return testRoute(f, config.Route{Service: "s" + prefix, Host: host, PathPrefix: prefix, StripPrefix: true})
	}
	tbl := newTable([]*Route{mk("", "/"), mk("", "/api"), mk("", "/api/v1/"), mk("shop.example.com", "/api")})
	f.Fuzz(func(t *testing.T, host, path string) {
		rt := tbl.Match(host, path)
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
