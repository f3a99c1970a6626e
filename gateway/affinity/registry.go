package affinity

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// Routes is every route being served and the services they send to: the
// config file's routes and those from Consul tags (tags.go), the routing
// table the request path loads, and each service's watch. It is the one
// owner of that state; the gateway wires it and reads it through the
// methods below. Safe for concurrent use.
type Routes struct {
	env   Env
	table atomic.Pointer[Table]

	mu         sync.Mutex // guards the fields below (state path only)
	cfg        *config.Compiled
	services   map[string]*Service
	fileRoutes []*Route
	tagRoutes  map[string][]*Route // service → routes from its tags
	conflicts  []string
	lastTags   map[string][]string // the catalog's last answer
	bg         context.Context     // Start's: services added later start with it
}

// NewRoutes builds the routes of cc; Start starts watching their services.
func NewRoutes(cc *config.Compiled, env Env) *Routes {
	rs := &Routes{env: env, cfg: cc, services: map[string]*Service{}, tagRoutes: map[string][]*Route{}}
	for _, rc := range cc.Routes() {
		svc := rs.serviceFor(rc.Service(), rc)
		rt := newRoute(rc, svc)
		svc.addRoute(rt)
		rs.fileRoutes = append(rs.fileRoutes, rt)
	}
	rs.table.Store(newTable(rs.fileRoutes))
	return rs
}

// Table is the routing table of the moment: one atomic load.
func (rs *Routes) Table() *Table { return rs.table.Load() }

// Start watches every service (and runs its active checks and session
// counts) with ctx; services added later start with it too.
func (rs *Routes) Start(ctx context.Context) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.bg = ctx
	for _, svc := range rs.services {
		svc.start(ctx)
	}
}

// Stop stops every service's watch and waits for it (call it once Start's
// context ended).
func (rs *Routes) Stop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.bg = nil
	for _, svc := range rs.services {
		svc.stop()
	}
}

// serviceFor returns the service named name, creating it. Called with
// rs.mu held or before Start.
func (rs *Routes) serviceFor(name string, spec *config.Spec) *Service {
	if svc, ok := rs.services[name]; ok {
		return svc
	}
	svc := newService(&rs.env, name, spec)
	rs.services[name] = svc
	return svc
}

// Services are the watched services, sorted by name.
func (rs *Routes) Services() []*Service {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := slices.Collect(maps.Values(rs.services))
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.name, b.name) })
	return out
}

// Service is the watched service named name (nil: none).
func (rs *Routes) Service(name string) *Service {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.services[name]
}

// All lists the routes being served, the config's then those from tags
// (by service), and the tag routes ignored for a conflict.
func (rs *Routes) All() (routes []*Route, conflicts []string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.all(), slices.Clone(rs.conflicts)
}

// all is All's routes. Called with rs.mu held.
func (rs *Routes) all() []*Route {
	all := slices.Clone(rs.fileRoutes)
	for _, name := range slices.Sorted(maps.Keys(rs.tagRoutes)) {
		all = append(all, rs.tagRoutes[name]...)
	}
	return all
}

// SessionTTL is the longest session TTL of service's routes: how long an
// unpin's tombstone lives, outliving any cookie hint of the session.
func (rs *Routes) SessionTTL(service string) time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var ttl time.Duration
	if svc := rs.services[service]; svc != nil {
		ttl = time.Duration(svc.ttl.Load())
	}
	for _, rt := range rs.all() {
		if rt.service.name == service {
			ttl = max(ttl, rt.cookie.ttl)
		}
	}
	return max(ttl, time.Second)
}

// Swap replaces the file routes with cc's (a reload), reconfigures the
// services they keep and starts those they add; services left without
// routes stop. Per-backend state lives in each service's registry, which
// is kept. Tag routes are then rebuilt under cc's defaults. It returns
// what it applied; what only a restart applies is added to needsRestart.
func (rs *Routes) Swap(cc *config.Compiled, needsRestart *[]string) (applied []string) {
	rs.mu.Lock()
	old := rs.fileRoutes
	oldSpecs := make([]config.Route, len(old))
	for i, rt := range old {
		oldSpecs[i] = rt.spec.Route()
	}
	var routes []*Route
	var started []*Service
	reconfigured := map[string]bool{}
	for _, rc := range cc.Routes() {
		svc, existed := rs.services[rc.Service()]
		if !existed {
			svc = rs.serviceFor(rc.Service(), rc)
			started = append(started, svc)
		} else if !reconfigured[svc.name] {
			reconfigured[svc.name] = true
			applied = append(applied, svc.reconfigure(rc.Route().RouteSettings, needsRestart)...)
		}
		rt := newRoute(rc, svc)
		svc.addRoute(rt) // publishes its state from the service's current backends
		routes = append(routes, rt)
	}
	rs.fileRoutes = routes
	rs.cfg = cc
	rs.storeTable()
	for _, rt := range old {
		if rt.service.removeRoute(rt) {
			rt.service.stop()
			delete(rs.services, rt.service.name)
			rs.env.Log.Info("service no longer routed", "service", rt.service.name)
		}
	}
	if rs.bg != nil {
		for _, svc := range started {
			svc.start(rs.bg)
		}
	}
	rs.retireTLSPools()
	newSpecs := make([]config.Route, len(routes))
	for i, rt := range routes {
		newSpecs[i] = rt.spec.Route()
	}
	if !reflect.DeepEqual(oldSpecs, newSpecs) {
		applied = append(applied, "routes")
	}
	tags, bg := rs.lastTags, rs.bg
	rs.mu.Unlock()
	if tags != nil && bg != nil {
		// Tag routes take the new defaults, and yield to new file routes.
		rs.ApplyTags(bg, tags)
	}
	return applied
}

// storeTable publishes the table of the file routes and the tag routes.
// Called with rs.mu held.
func (rs *Routes) storeTable() { rs.table.Store(newTable(rs.all())) }

// retireTLSPools tells the forwarder which backend TLS pools are in use:
// the routes', and any service's active checks' (they keep the transport
// of their service's first route). Called with rs.mu held, after the
// routes changed.
func (rs *Routes) retireTLSPools() {
	var inUse []*config.Spec
	for _, rt := range rs.all() {
		inUse = append(inUse, rt.spec)
	}
	for _, svc := range rs.services {
		if svc.checkCfg.Enabled() { // it runs active checks (start)
			inUse = append(inUse, svc.checkTLS)
		}
	}
	rs.env.RetireTLS(inUse)
}
