// Package admin owns latch's admin API: the handler of the admin listener
// (backends and their drain, routes, sessions, reload, readiness, /metrics,
// pprof, the status page and its data), its token check and its guard
// against web browsers. It reads and changes the gateway through State, a
// small interface the gateway implements; it never imports the gateway.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/statuspage"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// State is the gateway as the admin API reads and changes it. Its methods
// are called from admin requests' goroutines and the status page's
// sampler, concurrently with the request path; each returns copies (or
// immutable values) and holds the gateway's locks only while it copies.
type State interface {
	// Services lists the watched services, sorted by name.
	Services() []Service
	// Routes lists the routes being served, the config's first, then
	// those from Consul tags; conflicts are the tag routes ignored for a
	// conflict.
	Routes() (routes []Route, conflicts []string)
	// Drain drains (or undrains) the backend id in every service it is in:
	// it keeps its sessions and gets no new ones. False: no service has it.
	Drain(id string, drain bool) bool
	// Reload re-reads the configuration as SIGHUP does; its result is
	// served as JSON. ErrReloadUnavailable: the gateway has no config
	// loader (501); any other error refuses the new configuration (422).
	Reload() (result any, err error)
	// Waiting lists what readiness still waits for (none once ready).
	Waiting() []string
	// PendingRestart lists the settings the configuration last read
	// changes but only a restart applies.
	PendingRestart() []string
	// SessionTTL is the longest session TTL of service's routes (at least
	// a second): how long an unpin's tombstone lives, outliving any cookie
	// hint of the session.
	SessionTTL(service string) time.Duration
}

// ErrReloadUnavailable is State.Reload's error when reload is not
// available (no config loader).
var ErrReloadUnavailable = errors.New("configuration reload is not available (no config loader)")

// Service is one watched service as State reports it.
type Service struct {
	// Name is the service's name in Consul.
	Name string
	// Snapshot is discovery's last answer (nil before the first).
	Snapshot *discovery.Snapshot
	// Updated is when the last snapshot was applied (zero: never).
	Updated time.Time
	// Backends are the service's backends of the moment (nil before the
	// first snapshot).
	Backends *policy.Set
}

// Route is one route as State reports it.
type Route struct {
	// Name, Host and PathPrefix are the route's (its name, and what it
	// matches); Service is the service it sends to.
	Name, Host, PathPrefix, Service string
	// Policy is the configured policy chain; Chain the one in use (its
	// names; empty before the route's first backends).
	Policy, Chain []string
	// Sticky: the route pins sessions; FromTags: it came from Consul tags.
	Sticky, FromTags bool
}

// Options are what New needs besides State.
type Options struct {
	// State is the gateway's state (required).
	State State
	// Affinity is the session layer: session lookups, unpins and counts.
	Affinity *session.Affinity
	// Metrics is latch's registry, served on /metrics; OpenMetrics serves
	// the OpenMetrics format too (exemplars: tracing is on).
	Metrics     prometheus.Gatherer
	OpenMetrics bool
	// Sampler keeps the status page's rates (NewSampler).
	Sampler *statuspage.Sampler
	// Config is the admin section: token, pprof, allowed hosts.
	Config config.Admin
	// StoreKind names the session store on the status page: "redis" or
	// "memory".
	StoreKind string
	// BackendState is a backend's state as the status page names it (its
	// health, or draining).
	BackendState func(*policy.Backend) string
	// Logger gets a line per drain and unpin.
	Logger *slog.Logger
}

// API is the admin API. Build it with New; it is safe for concurrent use.
type API struct {
	o Options
}

// New builds the admin API over o.State.
func New(o Options) *API { return &API{o: o} }

// Handler serves the admin API. It is meant for a separate listener
// (127.0.0.1 by default) and never mounted on the public one. mount adds
// more pages behind the same token check.
func (a *API) Handler(mount ...func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	// The status page's HTML, CSS and JS hold no data: served without the
	// token, which the page asks for and sends with its requests.
	page := statuspage.New(statuspage.Options{Status: a.status, TokenRequired: a.o.Config.Token != ""})
	r.Get("/", page.ServeHTTP)
	r.Get("/assets/*", page.ServeHTTP)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		waiting := a.o.State.Waiting()
		if len(waiting) == 0 {
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "waiting for the first answer about: "+strings.Join(waiting, ", ")+"\n")
	})
	r.Group(func(r chi.Router) {
		r.Use(a.requireToken)
		r.Get("/admin/backends", a.backends)
		r.Get("/admin/status", page.JSON)
		r.Post("/admin/backends/{id}/drain", a.drain(true))
		r.Post("/admin/backends/{id}/undrain", a.drain(false))
		r.Get("/admin/routes", a.routes)
		r.Get("/admin/sessions/{id}", a.session)
		r.Delete("/admin/sessions/{id}", a.unpin)
		r.Post("/admin/reload", a.reload)
		r.Handle("/metrics", a.metrics())
		if a.o.Config.Pprof {
			r.HandleFunc("/debug/pprof/*", pprof.Index)
			r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			r.HandleFunc("/debug/pprof/profile", pprof.Profile)
			r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		for _, m := range mount {
			m(r)
		}
	})
	return guard(r, a.o.Config)
}

// requireToken checks "Authorization: Bearer <token>" in constant time
// when a token is configured.
func (a *API) requireToken(next http.Handler) http.Handler {
	want := []byte(a.o.Config.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(want) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="latch admin"`)
				writeText(w, http.StatusUnauthorized, "admin token required\n")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// reload re-reads the configuration (as SIGHUP does): 200 with what
// applied and what needs a restart, 422 naming the field when the new
// configuration is refused (nothing changed).
func (a *API) reload(w http.ResponseWriter, _ *http.Request) {
	res, err := a.o.State.Reload()
	switch {
	case errors.Is(err, ErrReloadUnavailable):
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (a *API) metrics() http.Handler {
	// Exemplars (a sampled request's trace id) are only in OpenMetrics;
	// without tracing the exposition stays as it was.
	return promhttp.HandlerFor(a.o.Metrics, promhttp.HandlerOpts{EnableOpenMetrics: a.o.OpenMetrics})
}

// MetricsHandler serves /metrics alone, without a token: the handler of
// the metrics listener (metrics.listen), so Prometheus scrapes without the
// admin token that also drains backends.
func (a *API) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics())
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}
