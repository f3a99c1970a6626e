package gateway

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

// route is one route being served: its compiled config and the service it
// sends to. Its routeState is swapped whenever its service's snapshot
// changes; the request path only loads it.
type route struct {
	spec    *config.Spec
	name    string
	host    string // lower case, no port; "" = any
	prefix  string // "/" or "/api" (no trailing slash)
	service *service
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

func newRoute(spec *config.Spec, svc *service) *route {
	cfg := spec.Route()
	st := cfg.Sticky
	return &route{
		spec: spec, name: spec.Name(), host: spec.Host(), prefix: spec.Prefix(), service: svc,
		sticky: st.Enabled.Get(), learn: st.Learn.Get(), header: http.CanonicalHeaderKey(st.Header.Get()), timeout: cfg.Timeout.Get(), attempts: cfg.Retry.Attempts.Get(),
		cookie: cookieAttrs{name: st.CookieName.Get(), suffix: spec.CookieSuffix(), secure: st.Secure.Get(), ttl: st.TTL.Get()},
	}
}

// matches reports whether path is under the route's prefix.
func (rt *route) matches(path string) bool { return rt.spec.Matches(path) }

// stripPrefix removes the route prefix from path when the route says so.
func (rt *route) stripPrefix(path string) string { return rt.spec.StripPrefix(path) }

// table is an immutable routing table.
type table struct {
	byHost map[string][]*route // longest prefix first
	any    []*route            // routes without host, longest prefix first
}

func newTable(routes []*route) *table {
	t := &table{byHost: map[string][]*route{}}
	for _, rt := range routes {
		if rt.host == "" {
			t.any = append(t.any, rt)
		} else {
			t.byHost[rt.host] = append(t.byHost[rt.host], rt)
		}
	}
	byLen := func(rs []*route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	}
	for _, rs := range t.byHost {
		byLen(rs)
	}
	byLen(t.any)
	return t
}

// match finds the route of a request: routes naming the host first, then
// routes for any host; within each, the longest prefix.
func (t *table) match(host, path string) *route {
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

// knowsHost reports whether some route names host (for absolute-form
// request URIs: latch is not an open proxy).
func (t *table) knowsHost(host string) bool {
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
