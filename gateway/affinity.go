package gateway

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// The gateway's side of affinity: it hands the session layer the request's
// cookie (or session header) and the route's backends (session.Resolve decides), offers the
// decided backend to the pipeline first, and renders the cookie
// session.Commit returns. The rules live in session.Decide.

// sessionRequest is what the session layer needs of r on route rt.
func sessionRequest(r *http.Request, rt *route) session.Request {
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

// Usable reports whether backend id may keep its sessions (session.Backends).
func (rs *routeState) Usable(id string) bool {
	b := rs.set.Lookup(id)
	return b != nil && b.CanKeep()
}

// Recovering reports whether backend id keeps its sessions while its
// breaker lets only probes through (session.Backends).
func (rs *routeState) Recovering(id string) bool {
	b := rs.set.Lookup(id)
	return b != nil && b.Recovering()
}

// ByHint maps a cookie hint to a backend of this snapshot (session.Backends).
func (rs *routeState) ByHint(h session.Hint) (string, bool) {
	if b := rs.hints[h]; b != nil {
		return b.ID, true
	}
	return "", false
}

// HintOf is backend id's cookie hint, precomputed per snapshot; 0 for a
// backend not in it (session.Backends).
func (rs *routeState) HintOf(id string) session.Hint {
	if b := rs.set.Lookup(id); b != nil {
		return rs.hintOf[b]
	}
	return 0
}

var _ session.Backends = (*routeState)(nil)

// resolveSession decides r's session and returns the backend to try first
// (nil: let the policy pick).
func (g *Gateway) resolveSession(r *http.Request, st *reqState) *policy.Backend {
	if !st.rt.sticky {
		return nil
	}
	st.req = sessionRequest(r, st.rt)
	ctx, span := r.Context(), trace.Span(nil)
	if g.tracing != nil {
		ctx, span = g.storeSpan(ctx, "session.resolve")
	}
	st.sess = g.affinity.Resolve(ctx, st.req, st.rs)
	var b *policy.Backend
	if st.sess.Backend != "" {
		b = st.rs.set.Lookup(st.sess.Backend)
	}
	if span != nil {
		endStoreSpan(span, st, b)
	}
	return b
}

// sessionPicked is called when the policy chose b: a session pinned
// elsewhere is re-pinned (see session.Affinity.Picked), and the request goes
// to the racing replica's choice when that one won and may serve it.
func (g *Gateway) sessionPicked(r *http.Request, st *reqState, b *policy.Backend, skip *policy.Skip) *policy.Backend {
	if !st.rt.sticky {
		return b
	}
	ctx, span, from := r.Context(), trace.Span(nil), st.sess.Pinned
	if g.tracing != nil && from != "" && from != b.ID { // a pick that may re-pin
		ctx, span = g.storeSpan(ctx, "session.repin")
	}
	winner := g.affinity.Picked(ctx, st.req, &st.sess, st.rs, b.ID)
	if span != nil {
		if winner != b.ID {
			span.SetAttributes(attribute.String("latch.winner", winner))
		}
		endStoreSpan(span, st, b)
		if st.sess.Kind == session.KindRepinned {
			trace.SpanFromContext(r.Context()).AddEvent("re-pinned", trace.WithAttributes(
				attribute.String("latch.from", from), attribute.String("latch.to", winner)))
		}
	}
	if winner != b.ID {
		if wb := st.rs.set.Lookup(winner); wb != nil && wb.CanKeep() && !skip.Has(wb) {
			return wb
		}
	}
	return b
}

// commitSession runs when backend b answered: it stores the pin and sets
// latch's cookie on the response's header h.
func (g *Gateway) commitSession(h http.Header, r *http.Request, st *reqState, b *policy.Backend) {
	rt := st.rt
	if !rt.sticky {
		return
	}
	app := ""
	if rt.learn != "" {
		app = setCookieValue(h, rt.learn)
	}
	ctx, span := r.Context(), trace.Span(nil)
	if g.tracing != nil {
		ctx, span = g.storeSpan(ctx, "session.commit")
	}
	c, set := g.affinity.Commit(ctx, st.req, &st.sess, st.rs, b.ID, app)
	if span != nil {
		endStoreSpan(span, st, b)
	}
	st.rs.series.session(b, st.sess.Kind)
	countSession(b, st.sess.Kind)
	if set {
		h.Add("Set-Cookie", g.cookieString(rt, r, c))
	}
}

// cookieString renders latch's Set-Cookie line for cookie c, in one
// allocation.
func (g *Gateway) cookieString(rt *route, r *http.Request, c session.Cookie) string {
	secure := false
	switch rt.cookie.secure {
	case "always":
		secure = true
	case "auto":
		secure = g.fwd.Scheme(r) == "https"
	}
	var buf [256]byte // on the stack; a longer line grows it on the heap
	b := append(buf[:0], rt.cookie.name...)
	b = append(b, '=')
	b = g.affinity.Codec().AppendEncode(b, c)
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
