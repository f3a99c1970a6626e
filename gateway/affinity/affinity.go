// Package affinity owns a route's backends and its sessions' decision:
// the routes being served and their table (routes.go, registry.go, tags.go
// for the routes from Consul tags), each service's backends as discovery
// and latch's own health checks report them (service.go, healthcheck.go,
// grpchealth.go), the live-session counts least_sessions reads
// (sessioncounts.go), and per request the session's decision and the
// picker the forwarding pipeline asks for backends (request.go), with the
// request path's metric series (series.go, backendmetrics.go) and the
// session store's spans (spans.go).
//
// A sticky request meets the session store twice, never while a backend
// is being asked: Resolve, before forwarding, reads the cookie (or session
// header) and the pin (local cache, else Redis; the cookie's signed hint
// when Redis cannot answer) and decides keep, restore, re-pin or new
// (session.Decide); commit, the done callback of Pick, writes the pin and
// sets the cookie once a backend answered. Pick itself, called by
// gateway/forward inside its retry loop, never blocks and never calls the
// store, as grpc-go's balancer contract asks of pickers.
//
// The re-pin is the one decision that needs the store in between: when
// the session's backend is unusable, or fails mid-loop, the request may go
// to another backend only once the compare-and-swap in Redis has said
// which one, because two replicas racing to re-pin one session must send
// it to the same backend (the fault suite's two-replica re-pin row). A
// pick that would re-pin is therefore not handed out: Pick returns nil and
// Waiting says a backend waits on a re-pin, which ends forward's pass
// before any other backend is tried; Settle then runs the compare-and-swap
// outside the loop, and the next pass starts with the winner pinned.
// Re-pinning at commit instead, after another backend answered, would let
// the two replicas answer from different backends; re-pinning inside Pick
// would block it up to the store's settle timeout.
//
// The package imports session, policy, discovery, gateway/config and
// gateway/forward, never gateway: the gateway hands it what it needs of
// the process (Env) and reads route state through Routes' methods.
package affinity

import (
	"net/http"
	"strings"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// sessionRequest is what the session layer needs of r on route rt.
func sessionRequest(r *http.Request, rt *Route) session.Request {
	req := session.Request{Service: rt.service.name, TTL: rt.cookie.ttl}
	switch {
	case rt.header != "":
		req.FromHeader = true
		if v := r.Header[rt.header]; len(v) > 0 && v[0] != "" {
			// Named by the header it came in, so the same value in another
			// header, or as an application cookie (learn_cookie), is
			// another session.
			req.AppValue = "hdr\x00" + rt.header + "\x00" + v[0]
		}
	case rt.learn != "":
		req.Learn, req.AppValue = true, policy.CookieValue(r.Header["Cookie"], rt.learn)
	default:
		req.Cookie = policy.CookieValue(r.Header["Cookie"], rt.cookie.name)
	}
	return req
}

// cookieString renders latch's Set-Cookie line for cookie c, in one
// allocation.
func (s *Session) cookieString(c session.Cookie) string {
	rt := s.rt
	secure := false
	switch rt.cookie.secure {
	case "always":
		secure = true
	case "auto":
		secure = s.env.Scheme(s.r) == "https"
	}
	var buf [256]byte // on the stack; a longer line grows it on the heap
	b := append(buf[:0], rt.cookie.name...)
	b = append(b, '=')
	b = s.env.Sessions.Codec().AppendEncode(b, c)
	b = append(b, rt.cookie.suffix...)
	if secure {
		b = append(b, "; Secure"...)
	}
	return string(b)
}

// setCookieValue finds the value a response's Set-Cookie gives name.
func setCookieValue(h http.Header, name string) string {
	for _, line := range h["Set-Cookie"] {
		first, _, _ := strings.Cut(line, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(first), "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
