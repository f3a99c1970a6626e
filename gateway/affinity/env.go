package affinity

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Env is what this package needs of the process around it, handed in by
// the gateway when it builds its Routes. Every field but Tracer is
// required.
type Env struct {
	Log *slog.Logger
	// Source watches each service's backends.
	Source discovery.Source
	// Sessions is the session layer: the store behind resolve and commit.
	Sessions *session.Affinity
	// Metrics counts what the state path and the request path see.
	Metrics Metrics
	// Trusted are the proxies whose forwarding headers are believed (the
	// hash policies' client address).
	Trusted []netip.Prefix
	// Transport is how a route's active health checks reach its backends
	// (the forwarder's transport for spec's backend_tls).
	Transport func(spec *config.Spec) http.RoundTripper
	// Scheme is the scheme a request came in with ("https" behind TLS, or
	// a trusted proxy's), for the cookie's Secure attribute in auto mode.
	Scheme func(r *http.Request) string
	// RetireTLS is told the specs whose backend TLS pools are still in
	// use each time the routes change.
	RetireTLS func(inUse []*config.Spec)
	// Tracer makes the session store spans (nil: tracing off).
	Tracer trace.Tracer
	// FirstCheckWait is how long a service whose backends' checks have
	// not answered yet waits for one before it is ready anyway
	// (discovery.first_check_wait; not positive: ready at once).
	FirstCheckWait time.Duration
}

// Metrics is the registry's side of this package: the gateway's
// Prometheus series. Methods are cheap and safe for concurrent use.
type Metrics interface {
	// DiscoveryStart creates service's discovery series before its first
	// snapshot.
	DiscoveryStart(service string)
	// DiscoveryUpdate records a snapshot; prev is the one before (nil at
	// first).
	DiscoveryUpdate(service string, s discovery.Snapshot, prev *discovery.Snapshot)
	// PanicMode records whether service is in panic mode.
	PanicMode(service string, on bool)
	// BackendGone deletes the series of a backend that left service.
	BackendGone(service string, routes []string, backend string)
	// Fallback counts a pick handed from one policy of route's chain to
	// the next.
	Fallback(route, from, to string)
	// BreakerChange counts a backend's breaker transition.
	BreakerChange(service, backend string, to policy.BreakerState)
	// TagConflicts records how many tag routes are ignored for a conflict.
	TagConflicts(n int)
	// Vectors are the request path's series, cached per snapshot.
	Vectors() Vectors
}

// Vectors are the registry's vectors the request path counts into, by
// route and backend (series.go caches their series per snapshot).
type Vectors struct {
	Requests *prometheus.CounterVec   // route, backend, code class
	Duration *prometheus.HistogramVec // route
	Upstream *prometheus.HistogramVec // route, backend
	Sessions *prometheus.CounterVec   // route, backend, outcome
}

// CodeClasses are the code label's values, indexed by CodeClass.
var CodeClasses = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// CodeClass is the index in CodeClasses of a status code's class.
func CodeClass(code int) int {
	if c := code / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

// Request counts a request on route answered by backend ("": none) with
// code after d; ex, when set, is the duration's exemplar.
func (v Vectors) Request(route, backend string, code int, d time.Duration, ex prometheus.Labels) {
	v.Requests.WithLabelValues(route, backend, CodeClasses[CodeClass(code)]).Inc()
	Observe(v.Duration.WithLabelValues(route), d.Seconds(), ex)
}

// Observe adds x to o, with exemplar ex when set (a sampled request's
// trace id: tracing on; OpenMetrics scrapes show it).
func Observe(o prometheus.Observer, x float64, ex prometheus.Labels) {
	if ex != nil {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(x, ex)
			return
		}
	}
	o.Observe(x)
}
