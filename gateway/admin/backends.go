package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/session"
)

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

func (a *API) backends(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"services": a.Services(r.Context())})
}

// sessionCounts asks the store for the live sessions of each of svc's
// backends, within a second (an error: unknown).
func (a *API) sessionCounts(ctx context.Context, svc Service) (map[string]int64, error) {
	var ids []string
	if svc.Backends != nil {
		for _, b := range svc.Backends.Backends {
			ids = append(ids, b.ID)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return a.o.Affinity.Sessions(ctx, svc.Name, ids)
}

// Services is the state of every watched service, sorted by name: the data
// behind /admin/backends. Session counts come from the store, bounded by a
// second per service (-1: unknown).
func (a *API) Services(ctx context.Context) []ServiceStatus {
	services := a.o.State.Services()
	out := make([]ServiceStatus, 0, len(services))
	for _, svc := range services {
		as := ServiceStatus{Service: svc.Name, Backends: []BackendStatus{}}
		if snap := svc.Snapshot; snap != nil {
			as.Stale, as.Index = snap.Stale, snap.Index
		}
		if !svc.Updated.IsZero() {
			t := svc.Updated.UTC()
			as.Updated = &t
		}
		counts, err := a.sessionCounts(ctx, svc)
		if set := svc.Backends; set != nil {
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

// drain drains (or undrains) a backend of every service it is in: it
// keeps its sessions and gets no new ones. The drain is this replica's;
// Consul maintenance mode drains it for every replica.
func (a *API) drain(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if !a.o.State.Drain(id, drain) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no backend with id " + id})
			return
		}
		a.o.Logger.Info("admin drain", "backend", id, "drained", drain)
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "drained": drain})
	}
}

// Routes lists the routes being served (the config's, then those from
// Consul tags) and the tag routes ignored for a conflict: the data behind
// /admin/routes.
func (a *API) Routes() (routes []RouteStatus, conflicts []string) {
	rts, conflicts := a.o.State.Routes()
	for _, rt := range rts {
		routes = append(routes, RouteStatus{Name: rt.Name, Host: rt.Host, PathPrefix: rt.PathPrefix,
			Service: rt.Service, Policy: rt.Policy, Sticky: rt.Sticky, FromTags: rt.FromTags})
	}
	return routes, conflicts
}

func (a *API) routes(w http.ResponseWriter, _ *http.Request) {
	routes, conflicts := a.Routes()
	writeJSON(w, http.StatusOK, map[string]any{"routes": routes, "conflicts": conflicts})
}

// sessionParam reads {id}: a session id (base64url) or a whole latch
// cookie value.
func (a *API) sessionParam(r *http.Request) (session.ID, bool) {
	raw := chi.URLParam(r, "id")
	if c, ok := a.o.Affinity.Codec().Decode(raw); ok {
		return c.ID, true
	}
	return session.ParseID(raw)
}

// sessionServices is ?service=NAME, or every service (by name).
func (a *API) sessionServices(r *http.Request) []string {
	if s := r.URL.Query().Get("service"); s != "" {
		return []string{s}
	}
	var out []string
	for _, svc := range a.o.State.Services() {
		out = append(out, svc.Name)
	}
	return out
}

func (a *API) session(w http.ResponseWriter, r *http.Request) {
	id, ok := a.sessionParam(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a session id or latch cookie"})
		return
	}
	// ?source=store asks the store only, bypassing this replica's cache.
	fromStore := r.URL.Query().Get("source") == "store"
	pins := map[string]string{}
	for _, svc := range a.sessionServices(r) {
		var b string
		var found bool
		var err error
		if fromStore {
			b, found, err = a.o.Affinity.LookupStore(r.Context(), svc, id)
		} else {
			b, found, err = a.o.Affinity.Lookup(r.Context(), svc, id)
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

func (a *API) unpin(w http.ResponseWriter, r *http.Request) {
	id, ok := a.sessionParam(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a session id or latch cookie"})
		return
	}
	for _, svc := range a.sessionServices(r) {
		if err := a.o.Affinity.Unpin(r.Context(), svc, id, a.o.State.SessionTTL(svc)); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session store: " + err.Error()})
			return
		}
	}
	a.o.Logger.Info("admin unpin", "session_hash", accesslog.HashID(id[:]))
	w.WriteHeader(http.StatusNoContent)
}
