package affinity

import (
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Route is one route being served: its compiled config and the service it
// sends to. Its routeState is swapped whenever its service's snapshot
// changes; the request path only loads it (Begin).
type Route struct {
	spec    *config.Spec
	name    string
	host    string // lower case, no port; "" = any
	prefix  string // "/" or "/api" (no trailing slash)
	service *Service
	sticky  bool
	learn   string // sticky.learn_cookie ("" = latch's own cookie)
	header  string // sticky.header, canonical ("" = a cookie)
	cookie  cookieAttrs
	timeout time.Duration // whole request; 0 = none
	// attempts is the number of backends a request is sent to at most.
	attempts int
	state    atomic.Pointer[routeState]
}

// routeState is everything a request needs about its route's backends,
// built once per snapshot: the backend set, the policy chain over it and
// the cookie-hint map, and the route's metric series for these backends.
type routeState struct {
	set    *policy.Set
	chain  *policy.Chain
	hints  map[session.Hint]*policy.Backend
	hintOf map[*policy.Backend]session.Hint
	series *routeSeries
}

// cookieAttrs is the affinity cookie's attributes, pre-rendered.
type cookieAttrs struct {
	name   string
	suffix string // "; Path=/; HttpOnly; SameSite=Lax" and friends
	secure string // auto, always, never
	ttl    time.Duration
}

func newRoute(spec *config.Spec, svc *Service) *Route {
	cfg := spec.Route()
	st := cfg.Sticky
	return &Route{
		spec: spec, name: spec.Name(), host: spec.Host(), prefix: spec.Prefix(), service: svc,
		sticky: st.Enabled.Get(), learn: st.Learn.Get(), header: http.CanonicalHeaderKey(st.Header.Get()), timeout: cfg.Timeout.Get(), attempts: cfg.Retry.Attempts.Get(),
		cookie: cookieAttrs{name: st.CookieName.Get(), suffix: spec.CookieSuffix(), secure: st.Secure.Get(), ttl: st.TTL.Get()},
	}
}

// Name is the route's name.
func (rt *Route) Name() string { return rt.name }

// Spec is the route's compiled config.
func (rt *Route) Spec() *config.Spec { return rt.spec }

// Service is the name of the service the route sends to.
func (rt *Route) Service() string { return rt.service.name }

// Sticky reports whether the route keeps sessions on their backends.
func (rt *Route) Sticky() bool { return rt.sticky }

// Set is the backend set the route serves now (nil before its service's
// first snapshot).
func (rt *Route) Set() *policy.Set {
	if rs := rt.state.Load(); rs != nil {
		return rs.set
	}
	return nil
}

// Policies are the names of the route's policy chain as built for its
// current backends (the config's before the first snapshot).
func (rt *Route) Policies() []string {
	if rs := rt.state.Load(); rs != nil {
		return rs.chain.Names()
	}
	return rt.spec.Route().Policy.Get()
}

// matches reports whether path is under the route's prefix.
func (rt *Route) matches(path string) bool { return rt.spec.Matches(path) }

// stripPrefix removes the route prefix from path when the route says so.
func (rt *Route) stripPrefix(path string) string { return rt.spec.StripPrefix(path) }

// Table is an immutable routing table.
type Table struct {
	byHost map[string][]*Route // longest prefix first
	any    []*Route            // routes without host, longest prefix first
}

func newTable(routes []*Route) *Table {
	t := &Table{byHost: map[string][]*Route{}}
	for _, rt := range routes {
		if rt.host == "" {
			t.any = append(t.any, rt)
		} else {
			t.byHost[rt.host] = append(t.byHost[rt.host], rt)
		}
	}
	byLen := func(rs []*Route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	}
	for _, rs := range t.byHost {
		byLen(rs)
	}
	byLen(t.any)
	return t
}

// Match finds the route of a request: routes naming the host first, then
// routes for any host; within each, the longest prefix (nil: none).
func (t *Table) Match(host, path string) *Route {
	if len(t.byHost) > 0 {
		h := hostOnly(host)
		rs, ok := t.byHost[h]
		if !ok && hasUpper(h) {
			rs = t.byHost[strings.ToLower(h)]
		}
		for _, rt := range rs {
			if rt.matches(path) {
				return rt
			}
		}
	}
	for _, rt := range t.any {
		if rt.matches(path) {
			return rt
		}
	}
	return nil
}

// KnowsHost reports whether some route names host (for absolute-form
// request URIs: latch is not an open proxy).
func (t *Table) KnowsHost(host string) bool {
	_, ok := t.byHost[strings.ToLower(hostOnly(host))]
	return ok
}

// hostOnly strips the port from a Host header without allocating.
func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		if h, _, err := net.SplitHostPort(host); err == nil {
			return strings.Trim(h, "[]")
		}
		return host[:i]
	}
	return strings.Trim(host, "[]")
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
