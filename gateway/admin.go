package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/session"
)

// AdminHandler serves the admin API. It is meant for a separate listener
// (127.0.0.1 by default) and never mounted on the public one. mount adds
// more pages behind the same token check (a status page reads Status).
func (g *Gateway) AdminHandler(mount ...func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	// The status page's HTML, CSS and JS hold no data: served without the
	// token, which the page asks for and sends with its requests.
	page := g.statusPage()
	r.Get("/", page.ServeHTTP)
	r.Get("/assets/*", page.ServeHTTP)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		waiting := g.Waiting()
		if len(waiting) == 0 {
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "waiting for the first answer about: "+strings.Join(waiting, ", ")+"\n")
	})
	r.Group(func(r chi.Router) {
		r.Use(g.requireToken)
		r.Get("/admin/backends", g.adminBackends)
		r.Get("/admin/status", page.JSON)
		r.Post("/admin/backends/{id}/drain", g.adminDrain(true))
		r.Post("/admin/backends/{id}/undrain", g.adminDrain(false))
		r.Get("/admin/routes", g.adminRoutes)
		r.Get("/admin/sessions/{id}", g.adminSession)
		r.Delete("/admin/sessions/{id}", g.adminUnpin)
		r.Post("/admin/reload", g.adminReload)
		r.Handle("/metrics", g.metricsHandler())
		if g.c.Admin.Pprof {
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
	return g.adminGuard(r)
}

// requireToken checks "Authorization: Bearer <token>" in constant time
// when a token is configured.
func (g *Gateway) requireToken(next http.Handler) http.Handler {
	want := []byte(g.c.Admin.Token)
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

// BackendStatus is one backend as the admin API shows it.
type BackendStatus struct {
	ID       string   `json:"id"`
	Address  string   `json:"address"`
	Health   string   `json:"health"`
	Weight   int      `json:"weight"`
	Tags     []string `json:"tags,omitempty"`
	Breaker  string   `json:"breaker"`
	InFlight int64    `json:"in_flight"`
	// LatencyMS is the EWMA of response times (0: no data yet).
	LatencyMS float64 `json:"latency_ms"`
	Drained   bool    `json:"drained"`
	// Sessions pinned to the backend and live (-1: unknown, store
	// unreachable).
	Sessions int64 `json:"sessions"`
	// TargetShare is the backend's share of the service's live sessions by
	// weight, among the backends that take new sessions (0 when it does
	// not): where least_sessions steers new sessions.
	TargetShare float64 `json:"target_share"`
	// AcceptsNew reports whether new sessions may go to it.
	AcceptsNew bool `json:"accepts_new"`
}

// ServiceStatus is one watched service and its backends.
type ServiceStatus struct {
	Service  string          `json:"service"`
	Stale    bool            `json:"stale"`
	Index    uint64          `json:"index"`
	Updated  *time.Time      `json:"updated,omitempty"`
	Backends []BackendStatus `json:"backends"`
}

func (g *Gateway) adminBackends(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"services": g.Services(r.Context())})
}

// Services is the state of every watched service, sorted by name: the data
// behind /admin/backends (and any status page). Session counts come from
// the store, bounded by a second per service (-1: unknown).
func (g *Gateway) Services(ctx context.Context) []ServiceStatus {
	g.mu.Lock()
	services := make([]*service, 0, len(g.services))
	for _, svc := range g.services {
		services = append(services, svc)
	}
	g.mu.Unlock()
	slices.SortFunc(services, func(a, b *service) int { return strings.Compare(a.name, b.name) })

	out := make([]ServiceStatus, 0, len(services))
	for _, svc := range services {
		as := ServiceStatus{Service: svc.name, Backends: []BackendStatus{}}
		if snap := svc.snapshot(); snap != nil {
			as.Stale, as.Index = snap.Stale, snap.Index
		}
		if ns := svc.updated.Load(); ns != 0 {
			t := time.Unix(0, ns).UTC()
			as.Updated = &t
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		set := svc.registry.Current()
		var ids []string
		if set != nil {
			for _, b := range set.Backends {
				ids = append(ids, b.ID)
			}
		}
		counts, err := g.affinity.Sessions(cctx, svc.name, ids)
		cancel()
		if set != nil {
			for _, b := range set.Backends {
				n := int64(-1)
				if err == nil {
					n = counts[b.ID]
				}
				as.Backends = append(as.Backends, BackendStatus{
					ID: b.ID, Address: b.Addr, Health: b.Health.String(), Weight: b.Weight, Tags: b.Tags,
					Breaker: b.Breaker().String(), InFlight: b.InFlight(),
					LatencyMS: float64(b.Latency().Microseconds()) / 1000,
					Drained:   b.Drained(), Sessions: n, TargetShare: set.Share(b), AcceptsNew: b.CanTake(),
				})
			}
		}
		out = append(out, as)
	}
	return out
}

// adminDrain drains (or undrains) a backend of every service it is in: it
// keeps its sessions and gets no new ones. The drain is this replica's;
// Consul maintenance mode drains it for every replica.
func (g *Gateway) adminDrain(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		g.mu.Lock()
		found := false
		for _, svc := range g.services {
			if svc.registry.Drain(id, drain) {
				found = true
			}
		}
		g.mu.Unlock()
		if !found {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no backend with id " + id})
			return
		}
		g.log.Info("admin drain", "backend", id, "drained", drain)
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "drained": drain})
	}
}

// RouteStatus is one route as the admin API shows it.
type RouteStatus struct {
	Name       string   `json:"name"`
	Host       string   `json:"host,omitempty"`
	PathPrefix string   `json:"path_prefix"`
	Service    string   `json:"service"`
	Policy     []string `json:"policy"`
	Sticky     bool     `json:"sticky"`
	FromTags   bool     `json:"from_tags"`
}

// Routes lists the routes being served (the config's, then those from
// Consul tags) and the tag routes ignored for a conflict: the data behind
// /admin/routes.
func (g *Gateway) Routes() (routes []RouteStatus, conflicts []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	add := func(rt *route) {
		rc := rt.spec.Route()
		routes = append(routes, RouteStatus{Name: rt.name, Host: rc.Host, PathPrefix: rc.PathPrefix,
			Service: rt.service.name, Policy: rc.Policy.Get(), Sticky: rt.sticky, FromTags: rt.spec.FromTags()})
	}
	for _, rt := range g.fileRoutes {
		add(rt)
	}
	for _, name := range slices.Sorted(maps.Keys(g.tagRoutes)) {
		for _, rt := range g.tagRoutes[name] {
			add(rt)
		}
	}
	return routes, slices.Clone(g.conflicts)
}

func (g *Gateway) adminRoutes(w http.ResponseWriter, _ *http.Request) {
	routes, conflicts := g.Routes()
	writeJSON(w, http.StatusOK, map[string]any{"routes": routes, "conflicts": conflicts})
}

// sessionParam reads {id}: a session id (base64url) or a whole latch
// cookie value.
func (g *Gateway) sessionParam(r *http.Request) (session.ID, bool) {
	raw := chi.URLParam(r, "id")
	if c, ok := g.affinity.Codec().Decode(raw); ok {
		return c.ID, true
	}
	return session.ParseID(raw)
}

// sessionServices is ?service=NAME, or every service.
func (g *Gateway) sessionServices(r *http.Request) []string {
	if s := r.URL.Query().Get("service"); s != "" {
		return []string{s}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for name := range g.services {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (g *Gateway) adminSession(w http.ResponseWriter, r *http.Request) {
	id, ok := g.sessionParam(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a session id or latch cookie"})
		return
	}
	// ?source=store asks the store only, bypassing this replica's cache.
	fromStore := r.URL.Query().Get("source") == "store"
	pins := map[string]string{}
	for _, svc := range g.sessionServices(r) {
		var b string
		var found bool
		var err error
		if fromStore {
			b, found, err = g.affinity.LookupStore(r.Context(), svc, id)
		} else {
			b, _, found, err = g.affinity.Lookup(r.Context(), svc, id)
		}
		if errors.Is(err, session.ErrUnpinned) {
			continue
		} else if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session store: " + err.Error()})
			return
		} else if found {
			pins[svc] = b
		}
	}
	if len(pins) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "session not pinned"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": id.String(), "pins": pins})
}

// sessionTTL is the longest session TTL of service's routes: how long an
// unpin's tombstone lives, outliving any cookie hint of the session.
func (g *Gateway) sessionTTL(service string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ttl time.Duration
	if svc := g.services[service]; svc != nil {
		ttl = time.Duration(svc.ttl.Load())
	}
	for _, rt := range g.fileRoutes {
		if rt.service.name == service {
			ttl = max(ttl, rt.cookie.ttl)
		}
	}
	for _, rts := range g.tagRoutes {
		for _, rt := range rts {
			if rt.service.name == service {
				ttl = max(ttl, rt.cookie.ttl)
			}
		}
	}
	return max(ttl, time.Second)
}

func (g *Gateway) adminUnpin(w http.ResponseWriter, r *http.Request) {
	id, ok := g.sessionParam(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a session id or latch cookie"})
		return
	}
	for _, svc := range g.sessionServices(r) {
		if err := g.affinity.Unpin(r.Context(), svc, id, g.sessionTTL(svc)); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session store: " + err.Error()})
			return
		}
	}
	g.log.Info("admin unpin", "session_hash", accesslog.HashID(id[:]))
	w.WriteHeader(http.StatusNoContent)
}

// adminReload re-reads the configuration (as SIGHUP does): 200 with what
// applied and what needs a restart, 422 naming the field when the new
// configuration is refused (nothing changed).
func (g *Gateway) adminReload(w http.ResponseWriter, _ *http.Request) {
	res, err := g.ReloadConfig()
	switch {
	case errors.Is(err, ErrReloadUnavailable):
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, res)
	}
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

func (g *Gateway) metricsHandler() http.Handler {
	// Exemplars (a sampled request's trace id) are only in OpenMetrics;
	// without tracing the exposition stays as it was.
	return promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{EnableOpenMetrics: g.tracing != nil})
}

// MetricsHandler serves /metrics alone, without a token: the handler of
// the metrics listener (metrics.listen), so Prometheus scrapes without the
// admin token that also drains backends.
func (g *Gateway) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metricsHandler())
	return mux
}
