package gateway

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/latchgw/latch/gateway/admin"
)

// ServiceStatus is one watched service as the admin API shows it.
type ServiceStatus = admin.ServiceStatus

// AdminHandler serves the admin API (gateway/admin). It is meant for a
// separate listener (127.0.0.1 by default) and never mounted on the public
// one. mount adds more pages behind the same token check.
func (g *Gateway) AdminHandler(mount ...func(chi.Router)) http.Handler {
	return g.admin.Handler(mount...)
}

// MetricsHandler serves /metrics alone, without a token: the metrics
// listener's handler (metrics.listen).
func (g *Gateway) MetricsHandler() http.Handler { return g.admin.MetricsHandler() }

// adminState is the gateway as the admin API reads and changes it
// (admin.State), over the services and routes of the moment.
type adminState struct{ *Gateway }

var _ admin.State = adminState{}

// Services lists the services, sorted by name, read outside g.mu (a
// service's snapshot has a lock of its own).
func (a adminState) Services() []admin.Service {
	a.mu.Lock()
	services := slices.Collect(maps.Values(a.services))
	a.mu.Unlock()
	slices.SortFunc(services, func(x, y *service) int { return strings.Compare(x.name, y.name) })
	out := make([]admin.Service, 0, len(services))
	for _, svc := range services {
		s := admin.Service{Name: svc.name, Snapshot: svc.snapshot(), Backends: svc.registry.Current(), TTL: time.Duration(svc.ttl.Load())}
		if ns := svc.updated.Load(); ns != 0 {
			s.Updated = time.Unix(0, ns)
		}
		out = append(out, s)
	}
	return out
}

// Routes lists the file's routes, then the tags' by service name.
func (a adminState) Routes() (routes []admin.Route, conflicts []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	add := func(rt *route) {
		rc := rt.spec.Route()
		r := admin.Route{Name: rt.name, Host: rc.Host, PathPrefix: rc.PathPrefix, Service: rt.service.name,
			Policy: rc.Policy.Get(), Sticky: rt.sticky, FromTags: rt.spec.FromTags(), TTL: rt.cookie.ttl}
		if rs := rt.state.Load(); rs != nil {
			r.Chain = rs.chain.Names()
		}
		routes = append(routes, r)
	}
	for _, rt := range a.fileRoutes {
		add(rt)
	}
	for _, name := range slices.Sorted(maps.Keys(a.tagRoutes)) {
		for _, rt := range a.tagRoutes[name] {
			add(rt)
		}
	}
	return routes, slices.Clone(a.conflicts)
}

// Drain drains (or undrains) id in every service.
func (a adminState) Drain(id string, drain bool) (found bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, svc := range a.services {
		if svc.registry.Drain(id, drain) {
			found = true
		}
	}
	return found
}

// Reload is ReloadConfig.
func (a adminState) Reload() (any, error) { return a.ReloadConfig() }
