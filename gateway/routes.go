package gateway

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// route is one compiled Route. Its routeState is swapped whenever its
// service's snapshot changes; the request path only loads it.
type route struct {
	cfg     Route
	host    string // lower case, no port; "" = any
	prefix  string // "/" or "/api" (no trailing slash)
	service *service
	sticky  bool
	cookie  cookieAttrs
	state   atomic.Pointer[routeState]
	// failStatus and retryStatus index HTTP status codes 0-599.
	failStatus  [600]bool
	retryStatus [600]bool
}

// routeState is everything a request needs about its route's backends,
// built once per snapshot: the backend set, the policy chain over it and
// the cookie-hint map.
type routeState struct {
	set   *policy.Set
	chain *policy.Chain
	hints map[session.Hint]*policy.Backend
}

// cookieAttrs is the affinity cookie's attributes, pre-rendered.
type cookieAttrs struct {
	name   string
	suffix string // "; Path=/; HttpOnly; SameSite=Lax" and friends
	secure string // auto, always, never
	ttl    time.Duration
}

func newRoute(cfg Route, svc *service) *route {
	rt := &route{cfg: cfg, service: svc, sticky: *cfg.Sticky.Enabled}
	rt.host = strings.ToLower(cfg.Host)
	rt.prefix = strings.TrimSuffix(cfg.PathPrefix, "/")
	if rt.prefix == "" {
		rt.prefix = "/"
	}
	for _, c := range cfg.Breaker.FailureStatus {
		rt.failStatus[c] = true
	}
	for _, c := range cfg.Retry.OnStatus {
		rt.retryStatus[c] = true
	}
	st := cfg.Sticky
	var b strings.Builder
	b.WriteString("; Path=")
	b.WriteString(st.Path)
	if st.Domain != "" {
		b.WriteString("; Domain=")
		b.WriteString(st.Domain)
	}
	if st.MaxAge > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(int64(st.MaxAge/time.Second), 10))
	}
	if *st.HTTPOnly {
		b.WriteString("; HttpOnly")
	}
	switch strings.ToLower(st.SameSite) {
	case "strict":
		b.WriteString("; SameSite=Strict")
	case "none":
		b.WriteString("; SameSite=None")
	default:
		b.WriteString("; SameSite=Lax")
	}
	rt.cookie = cookieAttrs{name: st.CookieName, suffix: b.String(), secure: st.Secure, ttl: st.TTL}
	return rt
}

// matches reports whether path is under the route's prefix, on a segment
// boundary: "/api" matches "/api" and "/api/x" but not "/apix".
func (rt *route) matches(path string) bool {
	if rt.prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, rt.prefix) &&
		(len(path) == len(rt.prefix) || path[len(rt.prefix)] == '/')
}

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

// stripPrefix removes the route prefix from path, keeping it rooted.
func (rt *route) stripPrefix(path string) string {
	if !rt.cfg.StripPrefix || rt.prefix == "/" {
		return path
	}
	rest := strings.TrimPrefix(path, rt.prefix)
	if rest == "" || rest[0] != '/' {
		return "/" + rest
	}
	return rest
}
