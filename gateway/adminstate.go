package gateway

import (
	"net/http"
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
// (admin.State): the services and routes of the moment (gateway/affinity).
type adminState struct{ *Gateway }

var _ admin.State = adminState{}

// Services lists the services, sorted by name.
func (a adminState) Services() []admin.Service {
	services := a.routes.Services()
	out := make([]admin.Service, 0, len(services))
	for _, svc := range services {
		out = append(out, admin.Service{Name: svc.Name(), Snapshot: svc.Snapshot(), Backends: svc.Set(), Updated: svc.Updated()})
	}
	return out
}

// Routes lists the file's routes, then the tags' by service name.
func (a adminState) Routes() (routes []admin.Route, conflicts []string) {
	all, conflicts := a.routes.All()
	for _, rt := range all {
		rc := rt.Spec().Route()
		routes = append(routes, admin.Route{Name: rt.Name(), Host: rc.Host, PathPrefix: rc.PathPrefix, Service: rt.Service(),
			Policy: rc.Policy.Get(), Sticky: rt.Sticky(), FromTags: rt.Spec().FromTags(), Chain: rt.Policies()})
	}
	return routes, conflicts
}

// Drain drains (or undrains) id in every service.
func (a adminState) Drain(id string, drain bool) (found bool) {
	for _, svc := range a.routes.Services() {
		if svc.Drain(id, drain) {
			found = true
		}
	}
	return found
}

// SessionTTL is the longest session TTL of service's routes.
func (a adminState) SessionTTL(service string) time.Duration { return a.routes.SessionTTL(service) }

// Reload is ReloadConfig.
func (a adminState) Reload() (any, error) { return a.ReloadConfig() }
