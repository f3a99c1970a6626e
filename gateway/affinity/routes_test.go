package affinity

import (
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// testRoute compiles a lone route under the built-in defaults.
func testRoute(t testing.TB, r config.Route) *Route {
	t.Helper()
	c, err := config.Config{Routes: []config.Route{r}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return newRoute(c.Routes()[0], nil)
}

func TestRouteMatching(t *testing.T) {
	mk := func(host, prefix string) *Route {
		return testRoute(t, config.Route{Service: host + prefix, Host: host, PathPrefix: prefix})
	}
	root, api, apiV2, shop, shopAPI := mk("", "/"), mk("", "/api"), mk("", "/api/v2/"), mk("shop.example.com", "/"), mk("shop.example.com", "/api")
	tbl := newTable([]*Route{root, api, apiV2, shop, shopAPI})
	tests := []struct {
		host, path string
		want       *Route
	}{
		{"x", "/", root},
		{"x", "/apix", root},
		{"x", "/api", api},
		{"x", "/api/", api},
		{"x", "/api/v2", apiV2},
		{"x", "/api/v2/users", apiV2},
		{"shop.example.com", "/", shop},
		{"SHOP.example.com:8080", "/api/cart", shopAPI},
		{"shop.example.com", "/apix", shop},
		{"[::1]:80", "/api", api},
	}
	for _, tt := range tests {
		if got := tbl.Match(tt.host, tt.path); got != tt.want {
			t.Errorf("match(%q, %q) = %v; want %v", tt.host, tt.path, got.name, tt.want.name)
		}
	}
	if got := newTable([]*Route{api}).Match("x", "/other"); got != nil {
		t.Errorf("match outside every prefix = %v; want nil", got.name)
	}
	strip := testRoute(t, config.Route{Service: "strip", PathPrefix: "/api", StripPrefix: true})
	for in, want := range map[string]string{"/api": "/", "/api/": "/", "/api/x/y": "/x/y"} {
		if got := strip.stripPrefix(in); got != want {
			t.Errorf("stripPrefix(%q) = %q; want %q", in, got, want)
		}
	}
}
