package affinity

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Session is one proxied request's state on the affinity side: its route,
// the route's backends of the moment, its session's decision, and the
// picker forward.Serve asks for backends. Begin hands one out, End takes
// it back (pooled). Its methods run on the request's goroutine.
type Session struct {
	rt   *Route
	rs   *routeState
	env  *Env
	r    *http.Request // as forward passes it to Pick: its context bounds commit
	req  session.Request
	sess session.Decision
	// pinned is the session's backend, offered first in a pass (nil: the
	// policy picks); asked: this pass's first Pick came.
	pinned *policy.Backend
	asked  bool
	// repin is the policy's pick waiting on a re-pin (Settle).
	repin *policy.Backend
	// declined is the backend that last answered with a status the route
	// retries on (Declined), until the next Pick.
	declined *policy.Backend
	// last is the backend the session layer's last lookup by id found:
	// Decide asks of one backend several times.
	last *policy.Backend
	done func(http.Header, *policy.Backend) // s.commit, bound once per pooled Session
}

var sessions = sync.Pool{New: func() any {
	s := new(Session)
	s.done = s.commit
	return s
}}

var (
	_ forward.Picker   = (*Session)(nil)
	_ forward.Decliner = (*Session)(nil)
	_ session.Backends = (*Session)(nil)
)

// Begin starts a request on rt; nil while rt's service has no backends
// known yet. End returns the Session.
func (rt *Route) Begin() *Session {
	rs := rt.state.Load()
	if rs == nil {
		return nil
	}
	s := sessions.Get().(*Session)
	*s = Session{rt: rt, rs: rs, env: rt.service.env, done: s.done}
	return s
}

// End returns s to the pool; s must not be used after.
func (s *Session) End() {
	*s = Session{done: s.done}
	sessions.Put(s)
}

// Resolve decides r's session before forwarding (the store is asked here,
// bounded by its timeout; the cookie's hint stands in when it does not
// answer): the session's backend is then offered first.
func (s *Session) Resolve(r *http.Request) {
	if !s.rt.sticky {
		return
	}
	s.req = sessionRequest(r, s.rt)
	ctx, span := s.storeSpan(r.Context(), "session.resolve")
	s.sess = s.env.Sessions.Resolve(ctx, s.req, s)
	if s.sess.Backend != "" {
		s.pinned = s.lookup(s.sess.Backend)
	}
	s.endStoreSpan(span, s.pinned)
}

// Pick offers the session's backend first, then the policy's picks. It
// never blocks and never calls the store: a pick that would re-pin the
// session is held back (nil, Waiting) for Settle.
func (s *Session) Pick(r *http.Request, skip *policy.Skip) (*policy.Backend, func(http.Header, *policy.Backend)) {
	s.r = r
	if !s.asked {
		s.asked = true
		if s.pinned != nil {
			return s.pinned, s.done
		}
	}
	if s.repin != nil {
		if !skip.Has(s.repin) {
			return nil, nil // still waiting on Settle
		}
		s.repin = nil
	}
	declined := s.declined
	s.declined = nil
	b, err := s.rs.chain.Pick(r, *skip)
	if err != nil {
		return nil, nil
	}
	if s.rt.sticky && declined != nil {
		s.sess.Declined(s.req, declined.ID)
	}
	if s.rt.sticky && s.sess.Picked(s, b.ID) {
		s.repin = b
		return nil, nil
	}
	return b, s.done
}

// Declined notes that b answered with a status the route retries on
// (forward.Decliner): the next Pick tells the session's decision, which
// detours a header session rather than re-pin it.
func (s *Session) Declined(b *policy.Backend) { s.declined = b }

// Waiting reports whether the last Pick's nil holds back a pick that
// waits on a re-pin.
func (s *Session) Waiting() bool { return s.repin != nil }

// Settle re-pins the session to the held-back pick, between two passes of
// forward's loop: a compare-and-swap in the store (bounded by its settle
// timeout), so that replicas racing on the session agree. The next pass
// starts with the winner, or with the pick when the winner cannot take
// the request here.
func (s *Session) Settle(r *http.Request, skip *policy.Skip) bool {
	b := s.repin
	if b == nil {
		return false
	}
	s.repin = nil
	from := s.sess.Pinned
	ctx, span := s.storeSpan(r.Context(), "session.repin")
	winner := s.env.Sessions.Repick(ctx, s.req, &s.sess, b.ID)
	chosen := b
	if winner != b.ID {
		if wb := s.lookup(winner); wb != nil && wb.CanKeep() && !skip.Has(wb) {
			chosen = wb
		}
	}
	if span != nil {
		if winner != b.ID {
			span.SetAttributes(attribute.String("latch.winner", winner))
		}
		s.endStoreSpan(span, b)
		if s.sess.Kind == session.KindRepinned {
			trace.SpanFromContext(r.Context()).AddEvent("re-pinned", trace.WithAttributes(
				attribute.String("latch.from", from), attribute.String("latch.to", winner)))
		}
	}
	s.pinned, s.asked = chosen, false
	return true
}

// commit is Pick's done: once backend b answered it stores the pin (or
// the learned session's) and sets latch's cookie on the response's header
// h, counting the session's outcome.
func (s *Session) commit(h http.Header, b *policy.Backend) {
	rt := s.rt
	if !rt.sticky {
		return
	}
	app := ""
	if rt.learn != "" {
		app = setCookieValue(h, rt.learn)
	}
	ctx, span := s.storeSpan(s.r.Context(), "session.commit")
	c, set := s.env.Sessions.Commit(ctx, s.req, &s.sess, s, b.ID, app)
	s.endStoreSpan(span, b)
	s.rs.series.session(b, s.sess.Kind)
	countSession(b, s.sess.Kind)
	if set {
		h.Add("Set-Cookie", s.cookieString(c))
	}
}

// Upstream observes b's time to its response head.
func (s *Session) Upstream(b *policy.Backend, d time.Duration) { s.rs.series.upstream(b, d) }

// Answered counts the request in its route's series: answered by b (nil:
// none) with code after d; ex, when set, is the duration's exemplar.
func (s *Session) Answered(b *policy.Backend, code int, d time.Duration, ex prometheus.Labels) {
	s.rs.series.request(b, code, d, ex)
}

// Route is the request's route.
func (s *Session) Route() *Route { return s.rt }

// Kind says what happened to the request's session.
func (s *Session) Kind() session.Kind { return s.sess.Kind }

// ID is the session's id (ok false: none).
func (s *Session) ID() (id session.ID, ok bool) { return s.sess.ID, s.sess.HasID }

// lookup finds backend id in the request's backends, remembering it for
// the next lookup of the same id.
func (s *Session) lookup(id string) *policy.Backend {
	if b := s.last; b != nil && b.ID == id {
		return b
	}
	b := s.rs.set.Lookup(id)
	if b != nil {
		s.last = b
	}
	return b
}

// Usable reports whether backend id may keep its sessions (session.Backends).
func (s *Session) Usable(id string) bool {
	b := s.lookup(id)
	return b != nil && b.CanKeep()
}

// Recovering reports whether backend id keeps its sessions while its
// breaker lets only probes through (session.Backends).
func (s *Session) Recovering(id string) bool {
	b := s.lookup(id)
	return b != nil && b.Recovering()
}

// ByHint maps a cookie hint to a backend of this snapshot (session.Backends).
func (s *Session) ByHint(h session.Hint) (string, bool) {
	if b := s.rs.hints[h]; b != nil {
		s.last = b
		return b.ID, true
	}
	return "", false
}

// HintOf is backend id's cookie hint, precomputed per snapshot; 0 for a
// backend not in it (session.Backends).
func (s *Session) HintOf(id string) session.Hint {
	if b := s.lookup(id); b != nil {
		return s.rs.hintOf[b]
	}
	return 0
}
