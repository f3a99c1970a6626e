package affinity

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// routeSeries caches one route's request-path series for the backends of
// one snapshot, on its routeState: a request reaches its counters through
// the backend's pointer instead of hashing label values under the vector's
// lock (WithLabelValues). Each series is resolved on its first use, so
// /metrics shows the series it showed before: those that counted.
//
// A backend that leaves has its series deleted (Metrics.BackendGone) once
// the next routeState, without it, is published; a request still on the old
// state then counts into a handle no longer exported, which re-creates no
// series. A backend that comes back gets fresh handles with the new state.
type routeSeries struct {
	v        Vectors
	route    string
	duration Lazy[prometheus.Observer]
	backends map[*policy.Backend]*backendSeries // read-only once built
	none     backendSeries                      // no backend answered
}

// backendSeries are the series of one route and backend.
type backendSeries struct {
	id       string
	requests [len(CodeClasses)]Lazy[prometheus.Counter]
	upstream Lazy[prometheus.Observer]
	sessions [session.KindDetoured + 1]Lazy[prometheus.Counter]
}

// Lazy holds a series handle resolved on first use. Two requests may both
// resolve it: the vector hands both the same series. The zero value is
// ready for use.
type Lazy[T any] struct{ p atomic.Pointer[T] }

// Get returns the handle, resolving it on the first call.
func (l *Lazy[T]) Get(resolve func() T) T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	v := resolve()
	l.p.Store(&v)
	return v
}

func newRouteSeries(v Vectors, route string, set *policy.Set) *routeSeries {
	rs := &routeSeries{v: v, route: route, backends: make(map[*policy.Backend]*backendSeries, len(set.Backends))}
	for _, b := range set.Backends {
		rs.backends[b] = &backendSeries{id: b.ID}
	}
	return rs
}

// backend returns b's series (nil: b is not of this snapshot).
func (rs *routeSeries) backend(b *policy.Backend) *backendSeries {
	if b == nil {
		return &rs.none
	}
	return rs.backends[b]
}

// request counts a request answered by b (nil: none) with code after d;
// ex, when set, is the duration's exemplar (the request's trace).
func (rs *routeSeries) request(b *policy.Backend, code int, d time.Duration, ex prometheus.Labels) {
	bs := rs.backend(b)
	if bs == nil {
		rs.v.Request(rs.route, b.ID, code, d, ex)
		return
	}
	class := CodeClass(code)
	bs.requests[class].Get(func() prometheus.Counter {
		return rs.v.Requests.WithLabelValues(rs.route, bs.id, CodeClasses[class])
	}).Inc()
	Observe(rs.duration.Get(func() prometheus.Observer {
		return rs.v.Duration.WithLabelValues(rs.route)
	}), d.Seconds(), ex)
}

// upstream observes b's time to its response head.
func (rs *routeSeries) upstream(b *policy.Backend, d time.Duration) {
	bs := rs.backend(b)
	if bs == nil {
		rs.v.Upstream.WithLabelValues(rs.route, b.ID).Observe(d.Seconds())
		return
	}
	bs.upstream.Get(func() prometheus.Observer {
		return rs.v.Upstream.WithLabelValues(rs.route, bs.id)
	}).Observe(d.Seconds())
}

// session counts what happened to a request's session on backend b.
func (rs *routeSeries) session(b *policy.Backend, k session.Kind) {
	bs := rs.backend(b)
	if k == session.KindNone {
		return
	}
	if bs == nil || int(k) >= len(bs.sessions) {
		rs.v.Sessions.WithLabelValues(rs.route, b.ID, k.String()).Inc()
		return
	}
	bs.sessions[k].Get(func() prometheus.Counter {
		return rs.v.Sessions.WithLabelValues(rs.route, bs.id, k.String())
	}).Inc()
}
