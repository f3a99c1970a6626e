package gateway

import (
	"net/http"
	"strings"
	"time"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// sessionKind says what happened to a request's session; it is logged and
// counted.
type sessionKind uint8

const (
	sessNone     sessionKind = iota // route not sticky, or no key (learn mode before the app's cookie)
	sessNew                         // no valid cookie: a new session is pinned
	sessSticky                      // reached its pinned backend
	sessRestored                    // pin lost by the store (or store down): kept by the cookie's hint
	sessRepinned                    // pinned backend unusable: moved to a new one
)

func (k sessionKind) String() string {
	switch k {
	case sessNew:
		return "new"
	case sessSticky:
		return "sticky"
	case sessRestored:
		return "restored"
	case sessRepinned:
		return "repinned"
	}
	return "none"
}

// sessionState is the affinity part of a request's state.
type sessionState struct {
	kind      sessionKind
	id        session.ID
	hasID     bool
	pinned    string // backend id the session is pinned to before this request
	store     bool   // pin (SetNX) after the backend answered
	fresh     bool   // id made by this request: its pin cannot race
	setCookie bool
	learn     bool
}

// resolveSession finds the backend a request's session is pinned to, when
// it may still serve it. nil means "pick one": a new session, or a re-pin.
func (g *Gateway) resolveSession(r *http.Request, st *reqState) *policy.Backend {
	rt, rs := st.rt, st.rs
	if !rt.sticky {
		return nil
	}
	ss := &st.sess
	var hint session.Hint
	var issued int64
	if learn := rt.learn; learn != "" {
		v := cookieValue(r.Header, learn)
		if v == "" {
			return nil // the application has not issued its session yet
		}
		ss.learn, ss.id, ss.hasID = true, session.IDFromValue(v), true
	} else {
		c, ok := g.codec.Decode(cookieValue(r.Header, rt.cookie.name))
		if !ok {
			// No cookie, or a malformed, forged or oversized one: a new session.
			ss.kind, ss.id, ss.hasID, ss.store, ss.setCookie, ss.fresh = sessNew, session.NewID(), true, true, true, true
			return nil
		}
		ss.id, ss.hasID, hint, issued = c.ID, true, c.Hint, int64(c.Issued)
	}

	svc := rt.service.name
	var b *policy.Backend
	id, _, found, err := g.affinity.Lookup(r.Context(), svc, ss.id)
	switch {
	case found:
		ss.pinned = id
		b = rs.set.Lookup(id)
	case hint != 0 && time.Now().Unix()-issued < int64(rt.cookie.ttl/time.Second):
		// The store has no pin (it lost it, or it is unreachable: err says
		// which) but the cookie is younger than the session TTL: its signed
		// hint names the backend the session was on.
		if b = rs.hints[hint]; b != nil {
			ss.pinned, ss.store = b.ID, true
		}
	case err == nil:
		// Not pinned and the cookie outlived the TTL: the session expired.
		g.metrics.expired.Inc()
		ss.id, ss.fresh = session.NewID(), true
	}
	if b != nil && b.CanKeep() {
		if ss.store {
			ss.kind = sessRestored
		} else {
			ss.kind = sessSticky
			g.affinity.Touch(svc, ss.id, rt.cookie.ttl)
		}
		if !ss.learn && (hint != session.HintFor(svc, b.ID) ||
			time.Now().Unix()-issued > int64(rt.cookie.ttl/4/time.Second)) {
			// Another replica re-pinned it, or the cookie is getting old:
			// reissue it so its hint stays current and honoured.
			ss.setCookie = true
		}
		return b
	}
	ss.store = false
	if ss.pinned != "" {
		ss.kind = sessRepinned
	} else {
		ss.kind, ss.store = sessNew, true // expired or never stored
	}
	ss.setCookie = !ss.learn
	return nil
}

// sessionPicked is called when the policy chose b for this request's
// session. A session that was pinned elsewhere is re-pinned now, before the
// request goes out, with compare-and-swap: two replicas racing on one
// session agree on the winner, and this request goes to it.
func (g *Gateway) sessionPicked(r *http.Request, st *reqState, b *policy.Backend, skip *policy.Skip) *policy.Backend {
	ss := &st.sess
	if !ss.hasID || ss.pinned == "" || ss.pinned == b.ID {
		return b
	}
	svc := st.rt.service.name
	winner, err := g.affinity.Repin(r.Context(), svc, ss.id, ss.pinned, b.ID, st.rt.cookie.ttl)
	ss.kind, ss.setCookie, ss.store = sessRepinned, !ss.learn, false
	if err != nil {
		// The store is down: Repin kept the pin locally for replay.
		ss.pinned = b.ID
		return b
	}
	ss.pinned = winner
	if winner != b.ID {
		if wb := st.rs.set.Lookup(winner); wb != nil && wb.CanKeep() && !skip.Has(wb) {
			return wb
		}
	}
	return b
}

// commitSession runs when the backend answered: it stores a new pin and
// sets the cookie on the response's header h.
func (g *Gateway) commitSession(h http.Header, r *http.Request, st *reqState, b *policy.Backend) {
	ss, rt := &st.sess, st.rt
	if !rt.sticky {
		return
	}
	svc := rt.service.name
	ctx := r.Context()
	if rt.learn != "" {
		// Learn the application's session from its Set-Cookie.
		if v := setCookieValue(h, rt.learn); v != "" {
			id := session.IDFromValue(v)
			if !ss.hasID || id != ss.id {
				_, _ = g.affinity.Pin(ctx, svc, id, b.ID, rt.cookie.ttl)
				ss.kind = sessNew
			}
		}
		g.metrics.session(rt.name, ss.kind)
		return
	}
	if !ss.hasID {
		return
	}
	pinned := b.ID
	switch {
	case ss.store && ss.fresh:
		// An id made by this request: nobody else has it, nothing to wait for.
		g.affinity.PinNew(ctx, svc, ss.id, b.ID, rt.cookie.ttl)
	case ss.store:
		if got, err := g.affinity.Pin(ctx, svc, ss.id, b.ID, rt.cookie.ttl); err == nil && got != "" {
			pinned = got
		}
	}
	g.metrics.session(rt.name, ss.kind)
	if ss.setCookie || pinned != b.ID {
		h.Add("Set-Cookie", g.cookieString(rt, r, ss.id, session.HintFor(svc, pinned)))
	}
}

// cookieString renders latch's Set-Cookie value.
func (g *Gateway) cookieString(rt *route, r *http.Request, id session.ID, hint session.Hint) string {
	v := g.codec.Encode(session.Cookie{ID: id, Hint: hint, Issued: uint32(time.Now().Unix())})
	secure := false
	switch rt.cookie.secure {
	case "always":
		secure = true
	case "auto":
		secure = g.fwd.Scheme(r) == "https"
	}
	var b strings.Builder
	b.Grow(len(rt.cookie.name) + 1 + len(v) + len(rt.cookie.suffix) + 8)
	b.WriteString(rt.cookie.name)
	b.WriteByte('=')
	b.WriteString(v)
	b.WriteString(rt.cookie.suffix)
	if secure {
		b.WriteString("; Secure")
	}
	return b.String()
}

// cookieValue returns the value of the named request cookie without
// allocating (r.Cookie parses every cookie into new strings). The first
// occurrence wins, as in net/http.
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
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
