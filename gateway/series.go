package gateway

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
// A backend that leaves has its series deleted (Metrics.backendGone) once
// the next routeState, without it, is published; a request still on the old
// state then counts into a handle no longer exported, which re-creates no
// series. A backend that comes back gets fresh handles with the new state.
type routeSeries struct {
	m        *Metrics
	route    string
	duration lazy[prometheus.Observer]
	backends map[*policy.Backend]*backendSeries // read-only once built
	none     backendSeries                      // no backend answered
}

// backendSeries are the series of one route and backend.
type backendSeries struct {
	id       string
	requests [len(codeClasses)]lazy[prometheus.Counter]
	upstream lazy[prometheus.Observer]
	sessions [session.KindDetoured + 1]lazy[prometheus.Counter]
}

// lazy holds a series handle resolved on first use. Two requests may both
// resolve it: the vector hands both the same series.
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(resolve func() T) T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	v := resolve()
	l.p.Store(&v)
	return v
}

func newRouteSeries(m *Metrics, route string, set *policy.Set) *routeSeries {
	rs := &routeSeries{m: m, route: route, backends: make(map[*policy.Backend]*backendSeries, len(set.Backends))}
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
		rs.m.request(rs.route, b.ID, code, d, ex)
		return
	}
	class := codeClass(code)
	bs.requests[class].get(func() prometheus.Counter {
		return rs.m.requests.WithLabelValues(rs.route, bs.id, codeClasses[class])
	}).Inc()
	observe(rs.duration.get(func() prometheus.Observer {
		return rs.m.duration.WithLabelValues(rs.route)
	}), d.Seconds(), ex)
}

// upstream observes b's time to its response head.
func (rs *routeSeries) upstream(b *policy.Backend, d time.Duration) {
	bs := rs.backend(b)
	if bs == nil {
		rs.m.upstreamDur.WithLabelValues(rs.route, b.ID).Observe(d.Seconds())
		return
	}
	bs.upstream.get(func() prometheus.Observer {
		return rs.m.upstreamDur.WithLabelValues(rs.route, bs.id)
	}).Observe(d.Seconds())
}

// session counts what happened to a request's session on backend b.
func (rs *routeSeries) session(b *policy.Backend, k session.Kind) {
	bs := rs.backend(b)
	if bs == nil || int(k) >= len(bs.sessions) {
		rs.m.session(rs.route, b.ID, k)
		return
	}
	if k == session.KindNone {
		return
	}
	bs.sessions[k].get(func() prometheus.Counter {
		return rs.m.sessions.WithLabelValues(rs.route, bs.id, k.String())
	}).Inc()
}
