// Package metrics owns latch's Prometheus series and their registry:
// their names, help texts and buckets, and the observers the other
// packages count through (affinity.Metrics, forward.Observer,
// session.Observer, admission.Observer), all satisfied by *Series. The
// registry itself is handed to those that serve or read it (the /metrics
// endpoint, the status page's sampler, tlsserve's certificate series).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/admission"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Series are latch's Prometheus series. Names follow the Prometheus
// conventions: latch_ prefix, _total counters, _seconds durations. Its
// methods are safe for concurrent use.
type Series struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec            // route, backend, code (1xx..5xx)
	duration       *prometheus.HistogramVec          // route
	upstreamDur    *prometheus.HistogramVec          // route, backend
	retries        *prometheus.CounterVec            // route
	clientErrors   *prometheus.CounterVec            // route, cause
	fallbacks      *prometheus.CounterVec            // route, from, to
	breakerTrans   *prometheus.CounterVec            // service, backend, to
	sessions       *prometheus.CounterVec            // route, backend, outcome
	storeErrors    *prometheus.CounterVec            // op
	storeDuration  *prometheus.HistogramVec          // op
	cache          *prometheus.CounterVec            // result (hit, miss)
	cacheHit       affinity.Lazy[prometheus.Counter] // cache's series, resolved on first use
	cacheMiss      affinity.Lazy[prometheus.Counter]
	expired        prometheus.Counter
	reissued       prometheus.Counter
	discUpdates    *prometheus.CounterVec // service
	discStale      *prometheus.GaugeVec   // service
	discBackends   *prometheus.GaugeVec   // service, health
	discLastOK     *prometheus.GaugeVec   // service: unix time of the last fresh snapshot
	discHeld       *prometheus.CounterVec // service: empty answers held back
	tagConflicts   prometheus.Gauge
	panic          *prometheus.GaugeVec   // service
	reloads        *prometheus.CounterVec // result (ok, error)
	reloadedAt     prometheus.Gauge       // unix time of the last applied reload
	restartPending *prometheus.GaugeVec   // section: 1 while a reload left it waiting for a restart
	connsOpen      prometheus.Gauge       // the public listener's connection caps
	connsRefused   *prometheus.CounterVec // limit
	reqRefused     *prometheus.CounterVec // reason
}

// New registers latch's series in a registry of their own. It also
// implements the session layer's observer: pass it as session.Options.Metrics.
func New() *Series {
	m := &Series{reg: prometheus.NewRegistry()}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_requests_total", Help: "Requests answered, by route, backend and status class.",
	}, []string{"route", "backend", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "latch_request_duration_seconds", Help: "Time from request to the end of the response, by route.",
		Buckets: latency,
	}, []string{"route"})
	m.upstreamDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "latch_upstream_duration_seconds", Help: "Time from sending to a backend to its response headers.",
		Buckets: latency,
	}, []string{"route", "backend"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_retries_total", Help: "Requests sent to another backend after an attempt failed.",
	}, []string{"route"})
	m.clientErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_client_errors_total", Help: "Requests whose body the client broke (framing, truncated, reset, timeout), answered 400/408 and counted against no backend.",
	}, []string{"route", "cause"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_policy_fallbacks_total", Help: "Picks handed from one policy of the chain to the next.",
	}, []string{"route", "from", "to"})
	m.breakerTrans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_breaker_transitions_total", Help: "Circuit breaker state changes, by the state entered.",
	}, []string{"service", "backend", "to"})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_sessions_total", Help: "Requests by what happened to their session: new, sticky, restored (from the cookie hint: the store lost the pin, is down, or never had it, as for a new session's second request on another replica), repinned, detoured (its backend's breaker half-open with its probe taken: served elsewhere once, still pinned); backend is the one that served it (for repinned: where the session went; for detoured: the stand-in).",
	}, []string{"route", "backend", "outcome"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_session_store_errors_total", Help: "Failed session store (Redis) calls, by operation.",
	}, []string{"op"})
	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "latch_session_store_duration_seconds", Help: "Session store (Redis) call latency, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05},
	}, []string{"op"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_session_cache_total", Help: "Local session cache lookups, by result.",
	}, []string{"result"})
	m.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latch_sessions_expired_total", Help: "Sessions whose pin had expired when their client came back.",
	})
	m.reissued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latch_cookie_reissued_total", Help: "Affinity cookies signed with an old cookie secret, reissued under the first.",
	})
	m.discUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_discovery_updates_total", Help: "Snapshots received from discovery, by service.",
	}, []string{"service"})
	m.discStale = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "latch_discovery_stale", Help: "1 while the service's snapshot is stale (Consul unreachable).",
	}, []string{"service"})
	m.discBackends = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "latch_backends", Help: "Backends in the last snapshot, by service and health.",
	}, []string{"service", "health"})
	m.discLastOK = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "latch_discovery_last_fresh_timestamp_seconds", Help: "Unix time of the last fresh snapshot (staleness age = time() - this).",
	}, []string{"service"})
	m.discHeld = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_discovery_empty_held_total", Help: "Consul answers that removed every backend of a service, held back for discovery.empty_grace (counted once per hold).",
	}, []string{"service"})
	m.tagConflicts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "latch_route_conflicts", Help: "Routes from Consul tags ignored because a config route has the same host and prefix.",
	})
	m.panic = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "latch_panic_mode", Help: "1 while too few backends of the service look healthy to trust health checks.",
	}, []string{"service"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_config_reload_total", Help: "Configuration reloads (SIGHUP, POST /admin/reload), by result: ok (applied) or error (refused, nothing changed).",
	}, []string{"result"})
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.reloadedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "latch_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last configuration reload applied (0: none since start).",
	})
	m.restartPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "latch_config_restart_pending", Help: "1 for each configuration section the config file changes but only a restart applies (as the last reload found it).",
	}, []string{"section"})
	m.reg.MustRegister(m.reloads, m.reloadedAt, m.restartPending, m.panic, m.requests, m.duration, m.upstreamDur, m.retries, m.clientErrors, m.fallbacks,
		m.breakerTrans, m.sessions, m.storeErrors, m.storeDuration, m.cache, m.expired, m.reissued, m.discUpdates,
		m.discStale, m.discBackends, m.discLastOK, m.discHeld, m.tagConflicts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerServer()
	return m
}

var (
	_ affinity.Metrics   = (*Series)(nil)
	_ forward.Observer   = (*Series)(nil)
	_ admission.Observer = (*Series)(nil)
)

// Vectors are the request path's series (affinity.Metrics).
func (m *Series) Vectors() affinity.Vectors {
	return affinity.Vectors{Requests: m.requests, Duration: m.duration, Upstream: m.upstreamDur, Sessions: m.sessions}
}

// PanicMode records whether service is in panic mode (affinity.Metrics).
func (m *Series) PanicMode(service string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.panic.WithLabelValues(service).Set(v)
}

// Retry counts a request sent to another backend (forward.Observer).
func (m *Series) Retry(route string) { m.retries.WithLabelValues(route).Inc() }

// ClientError counts a request body the client broke (forward.Observer).
func (m *Series) ClientError(route, cause string) {
	m.clientErrors.WithLabelValues(route, cause).Inc()
}

// Refused counts a request refused before any backend was asked
// (forward.Observer), in latch_requests_refused_total.
func (m *Series) Refused(cause string) { m.reqRefused.WithLabelValues(cause).Inc() }

// Fallback counts a pick handed on along route's chain (affinity.Metrics).
func (m *Series) Fallback(route, from, to string) {
	m.fallbacks.WithLabelValues(route, from, to).Inc()
}

// BreakerChange counts a transition; latch_breaker_state itself is read
// at scrape time (affinity's collector) (affinity.Metrics).
func (m *Series) BreakerChange(service, backend string, to policy.BreakerState) {
	m.breakerTrans.WithLabelValues(service, backend, to.String()).Inc()
}

// BackendGone deletes the series of a backend that left service, so
// backends that come and go do not pile up series (affinity.Metrics).
func (m *Series) BackendGone(service string, routes []string, backend string) {
	for _, r := range routes {
		m.requests.DeletePartialMatch(prometheus.Labels{"route": r, "backend": backend})
		m.upstreamDur.DeletePartialMatch(prometheus.Labels{"route": r, "backend": backend})
		m.sessions.DeletePartialMatch(prometheus.Labels{"route": r, "backend": backend})
	}
	m.breakerTrans.DeletePartialMatch(prometheus.Labels{"service": service, "backend": backend})
}

// DiscoveryStart creates a service's discovery series before its first
// snapshot: stale until Consul has answered, never fresh, so an alert on
// them fires when Consul is down at start (affinity.Metrics).
func (m *Series) DiscoveryStart(service string) {
	m.discStale.WithLabelValues(service).Set(1)
	m.discLastOK.WithLabelValues(service).Set(0)
	m.discHeld.WithLabelValues(service)
}

// DiscoveryUpdate records a snapshot; prev is the one before (nil at
// first) (affinity.Metrics).
func (m *Series) DiscoveryUpdate(service string, s discovery.Snapshot, prev *discovery.Snapshot) {
	m.discUpdates.WithLabelValues(service).Inc()
	if s.Held && (prev == nil || !prev.Held) {
		m.discHeld.WithLabelValues(service).Inc()
	}
	if s.Stale {
		m.discStale.WithLabelValues(service).Set(1)
	} else {
		m.discStale.WithLabelValues(service).Set(0)
		m.discLastOK.WithLabelValues(service).SetToCurrentTime()
	}
	var counts [4]int
	for _, b := range s.Backends {
		counts[b.Health]++
	}
	for h, n := range counts {
		m.discBackends.WithLabelValues(service, discovery.Health(h).String()).Set(float64(n))
	}
}

// The session layer's observer (session.Observer): New's result is
// passed as session.Options.Metrics.
var _ session.Observer = (*Series)(nil)

// StoreError counts a failed session store call, by operation.
func (m *Series) StoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

// StoreLatency observes a session store call's latency, by operation.
func (m *Series) StoreLatency(op string, d time.Duration) {
	m.storeDuration.WithLabelValues(op).Observe(d.Seconds())
}

// CacheHit counts a local session cache lookup that found its session.
func (m *Series) CacheHit() {
	m.cacheHit.Get(func() prometheus.Counter { return m.cache.WithLabelValues("hit") }).Inc()
}

// CacheMiss counts a local session cache lookup that did not.
func (m *Series) CacheMiss() {
	m.cacheMiss.Get(func() prometheus.Counter { return m.cache.WithLabelValues("miss") }).Inc()
}

// Expired counts a session whose pin had expired when its client came back.
func (m *Series) Expired() { m.expired.Inc() }

// Resigned counts a cookie signed with an old secret, reissued under the
// first.
func (m *Series) Resigned() { m.reissued.Inc() }

// TagConflicts records how many tag routes are ignored (affinity.Metrics).
func (m *Series) TagConflicts(n int) { m.tagConflicts.Set(float64(n)) }

// registerServer adds the public listener's series: connections open and
// refused, requests refused before routing.
func (m *Series) registerServer() {
	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "latch_connections_open", Help: "Client connections open on the public listener and counted against server.max_connections.",
	})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_connections_refused_total", Help: "Client connections refused (503 and closed; with TLS on h1, closed before the handshake) by a cap: total (server.max_connections) or per_ip (server.max_connections_per_ip).",
	}, []string{"limit"})
	m.reqRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_requests_refused_total", Help: "Requests refused before routing, by reason: connect (501), trace (405), upgrade (400, malformed Upgrade), host (400, empty Host), target (400, non-ASCII target), conn_backends (503, its client connection held server.max_backend_connections_per_connection past the queue wait); and, on gateway/h1, each head refused before routing by its kind: request_line, header_line, host, too_many_fields (431), head_too_large (431), head_memory (503, server.max_header_memory taken), expect (417), truncated, ….",
	}, []string{"reason"})
	m.reg.MustRegister(m.connsOpen, m.connsRefused, m.reqRefused)
}

// Registry is the registry every series is in: the /metrics endpoint
// serves it; collectors of other packages register in it.
func (m *Series) Registry() *prometheus.Registry { return m.reg }

// ConnOpened counts a client connection admitted on the public listener
// (latch_connections_open).
func (m *Series) ConnOpened() { m.connsOpen.Inc() }

// ConnClosed counts an admitted client connection out.
func (m *Series) ConnClosed() { m.connsOpen.Dec() }

// ConnRefused counts a client connection a cap refused: limit is "total"
// or "per_ip" (latch_connections_refused_total).
func (m *Series) ConnRefused(limit string) { m.connsRefused.WithLabelValues(limit).Inc() }

// Reloaded counts a configuration reload, applied (ok) or refused; an
// applied one also sets the time of the last (latch_config_reload_total,
// latch_config_last_reload_success_timestamp_seconds).
func (m *Series) Reloaded(ok bool) {
	if !ok {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.reloadedAt.Set(float64(time.Now().UnixNano()) / 1e9)
}

// RestartPending records the configuration sections the last reload left
// waiting for a restart (latch_config_restart_pending), replacing the
// previous list.
func (m *Series) RestartPending(sections []string) {
	m.restartPending.Reset()
	for _, f := range sections {
		m.restartPending.WithLabelValues(f).Set(1)
	}
}
