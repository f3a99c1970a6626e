package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// service is one watched Consul service: its backend registry (breakers and
// load statistics survive snapshot changes) and the routes that use it.
// Everything here runs on the state path; the request path only reads the
// routeState pointers this publishes.
type service struct {
	name     string
	registry *policy.Registry
	g        *Gateway

	mu     sync.Mutex // guards routes, snap and opts; held by the watch goroutine and route changes
	routes []*route
	snap   *discovery.Snapshot
	opts   registryOptions // the route's settings registry is configured from
	// answered: a snapshot has had backends whose checks all answered
	// once. Until then panic mode is off (see judgePanic).
	answered bool

	ready    atomic.Bool
	updated  atomic.Int64 // unix nanos of the last snapshot
	cancel   context.CancelFunc
	running  sync.WaitGroup // the watch and the active checks
	checks   *activeChecks
	checkCfg config.HealthCheck
	checkTLS *config.Spec // its backend_tls: how the active checks reach the backends
	ttl      atomic.Int64 // session TTL (a time.Duration), for session counts; a reload sets it
}

func (g *Gateway) newService(name string, spec *config.Spec) *service {
	settings := spec.Route().RouteSettings
	svc := &service{name: name, g: g, checkCfg: settings.HealthCheck, checkTLS: spec}
	svc.ttl.Store(int64(settings.Sticky.TTL.Get()))
	svc.opts = svc.registryOptions(settings)
	svc.registry = policy.NewRegistry(name, svc.effective(svc.opts).Options(svc))
	g.metrics.discoveryStart(name)
	return svc
}

// start watches the service (and runs its active checks) until ctx ends
// or stop is called. Called with g.mu held.
func (svc *service) start(ctx context.Context) {
	ctx, svc.cancel = context.WithCancel(ctx)
	if svc.checkCfg.Enabled() {
		svc.mu.Lock()
		svc.checks = newActiveChecks(svc.name, svc.checkCfg, svc.g.fwd.TransportFor(svc.checkTLS), svc.g.log)
		svc.checks.scheme = forward.BackendScheme(svc.checkTLS)
		svc.mu.Unlock()
		svc.running.Go(func() { svc.checks.run(ctx, svc.republish) })
	}
	svc.running.Go(func() { svc.runSessionCounts(ctx) })
	svc.running.Go(func() {
		err := svc.g.source.Watch(ctx, svc.name, svc.update)
		if err != nil && !errors.Is(err, context.Canceled) {
			svc.g.log.Error("discovery stopped", "service", svc.name, "err", err)
		}
	})
}

// stop ends the watch and the active checks, and waits for both.
func (svc *service) stop() {
	if svc.cancel != nil {
		svc.cancel()
	}
	svc.running.Wait()
}

// update is the Source's callback: one goroutine at a time.
func (svc *service) update(s discovery.Snapshot) {
	svc.mu.Lock()
	prev := svc.snap
	svc.snap = &s
	svc.mu.Unlock()
	svc.g.metrics.discoveryUpdate(svc.name, s, prev)
	svc.updated.Store(time.Now().UnixNano())
	svc.republish()
	// Ready only once the routes can serve from this snapshot.
	if !svc.ready.Swap(true) {
		svc.g.log.Info("service discovered", "service", svc.name, "backends", len(s.Backends), "stale", s.Stale)
	} else {
		svc.g.log.Debug("service changed", "service", svc.name, "backends", len(s.Backends), "stale", s.Stale)
	}
}

// republish rebuilds the set and every route's pickers from the last
// snapshot (after a snapshot or an active health check changed).
func (svc *service) republish() {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.snap == nil {
		return
	}
	s := *svc.snap
	if svc.checks != nil {
		s = svc.checks.apply(s)
	}
	svc.judgePanic(s)
	prev := svc.registry.Current()
	set := svc.registry.Update(s)
	svc.forgetGone(prev, set)
	if set.Panic && (prev == nil || !prev.Panic) {
		svc.g.log.Warn("panic mode: too few backends look healthy to trust health checks; all but draining ones serve",
			"service", svc.name, "backends", len(set.Backends))
	} else if !set.Panic && prev != nil && prev.Panic {
		svc.g.log.Info("panic mode over: health checks trusted again", "service", svc.name)
	}
	svc.g.metrics.panicMode(svc.name, set.Panic)
	hints := svc.hints(set)
	for _, rt := range svc.routes {
		svc.publishRoute(rt, set, hints)
	}
}

// judgePanic turns panic mode on for the service once a snapshot has
// backends whose checks have all answered. Consul reports a check it has
// not run yet as critical, so at every start the first snapshot after the
// backends registered looked like an outage and latch warned of panic mode
// (issue 29). Called with mu held, before the registry takes s.
func (svc *service) judgePanic(s discovery.Snapshot) {
	if svc.answered || len(s.Backends) == 0 {
		return
	}
	for _, b := range s.Backends {
		if b.Unchecked {
			return
		}
	}
	svc.answered = true
	svc.registry.Reconfigure(svc.effective(svc.opts).Options(svc)) // same breakers: they are kept
}

// effective is o as the registry takes it now: no panic mode before the
// backends' checks have answered.
func (svc *service) effective(o registryOptions) registryOptions {
	if !svc.answered {
		o.panicThreshold = 0
	}
	return o
}

// forgetGone deletes the metric series of the backends in prev but not in
// set. Called with mu held.
func (svc *service) forgetGone(prev, set *policy.Set) {
	if prev == nil {
		return
	}
	var routes []string
	for _, b := range prev.Backends {
		if set.Lookup(b.ID) != nil {
			continue
		}
		if routes == nil {
			for _, rt := range svc.routes {
				routes = append(routes, rt.name)
			}
		}
		svc.g.metrics.backendGone(svc.name, routes, b.ID)
	}
}

// hintMaps map each backend's cookie hint to it and back, built once per
// snapshot and shared by the service's routes.
type hintMaps struct {
	byHint map[session.Hint]*policy.Backend
	of     map[*policy.Backend]session.Hint
}

func (svc *service) hints(set *policy.Set) hintMaps {
	h := hintMaps{byHint: make(map[session.Hint]*policy.Backend, len(set.Backends)),
		of: make(map[*policy.Backend]session.Hint, len(set.Backends))}
	for _, b := range set.Backends {
		hint := session.HintFor(svc.name, b.ID)
		h.byHint[hint], h.of[b] = b, hint
	}
	return h
}

// publishRoute builds rt's policy chain over set. Called with mu held.
func (svc *service) publishRoute(rt *route, set *policy.Set, hints hintMaps) {
	name, rc := rt.name, rt.spec.Route()
	chain, err := policy.NewChain(rc.Policy.Get(), set, policy.BuildOptions{
		HashHeader:     rc.Hash.Header.Get(),
		HashCookie:     rc.Hash.Cookie.Get(),
		TrustedProxies: svc.g.trusted,
	}, func(from, to string) {
		svc.g.metrics.fallback(name, from, to)
		svc.g.log.Debug("policy fallback", "route", name, "from", from, "to", to)
	})
	if err != nil {
		// Policies are validated at start; this is a bug, not bad input.
		svc.g.log.Error("building policy chain", "route", name, "err", err)
		return
	}
	rt.state.Store(&routeState{set: set, chain: chain, hints: hints.byHint, hintOf: hints.of,
		series: newRouteSeries(svc.g.metrics, name, set)})
}

// addRoute attaches rt and publishes its state at once when the service
// is already known.
func (svc *service) addRoute(rt *route) {
	svc.mu.Lock()
	svc.routes = append(svc.routes, rt)
	var set *policy.Set
	if svc.snap != nil {
		set = svc.registry.Current()
	}
	if set != nil {
		svc.publishRoute(rt, set, svc.hints(set))
	}
	svc.mu.Unlock()
}

// removeRoute detaches rt; it reports whether the service has no routes left.
func (svc *service) removeRoute(rt *route) bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	for i, r := range svc.routes {
		if r == rt {
			svc.routes = append(svc.routes[:i], svc.routes[i+1:]...)
			break
		}
	}
	return len(svc.routes) == 0
}

// snapshot returns the last snapshot (nil before the first).
func (svc *service) snapshot() *discovery.Snapshot {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.snap
}
