package affinity

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Service is one watched Consul service: its backend registry (breakers and
// load statistics survive snapshot changes) and the routes that use it.
// Everything here runs on the state path; the request path only reads the
// routeState pointers this publishes.
type Service struct {
	name     string
	registry *policy.Registry
	env      *Env

	mu     sync.Mutex // guards routes, snap and opts; held by the watch goroutine and route changes
	routes []*Route
	snap   *discovery.Snapshot
	opts   registryOptions // the route's settings registry is configured from
	// answered: a snapshot has had backends whose checks all answered
	// once. Until then panic mode is off (see judgePanic).
	answered bool

	ready atomic.Bool
	// firstCheck, once set, makes the service ready after Env.FirstCheckWait
	// even if no backend's check has answered by then. Guarded by mu.
	firstCheck *time.Timer
	updated    atomic.Int64 // unix nanos of the last snapshot
	cancel     context.CancelFunc
	running    sync.WaitGroup // the watch and the active checks
	checks     *activeChecks
	checkCfg   config.HealthCheck
	checkTLS   *config.Spec // its backend_tls: how the active checks reach the backends
	ttl        atomic.Int64 // session TTL (a time.Duration), for session counts; a reload sets it
}

func newService(env *Env, name string, spec *config.Spec) *Service {
	settings := spec.Route().RouteSettings
	svc := &Service{name: name, env: env, checkCfg: settings.HealthCheck, checkTLS: spec}
	svc.ttl.Store(int64(settings.Sticky.TTL.Get()))
	svc.opts = newRegistryOptions(settings)
	svc.registry = policy.NewRegistry(name, svc.effective(svc.opts).Options(svc))
	env.Metrics.DiscoveryStart(name)
	return svc
}

// Name is the service's name in discovery.
func (svc *Service) Name() string { return svc.name }

// Set is the service's current backend set (nil before its first
// snapshot).
func (svc *Service) Set() *policy.Set { return svc.registry.Current() }

// Drain drains (or undrains) backend id; it reports whether the service
// has it.
func (svc *Service) Drain(id string, drain bool) bool { return svc.registry.Drain(id, drain) }

// SessionsCountedAt is when least_sessions' counts were last read from
// the session store (zero: never).
func (svc *Service) SessionsCountedAt() time.Time { return svc.registry.SessionsCountedAt() }

// Updated is when the last snapshot arrived (zero: none yet).
func (svc *Service) Updated() time.Time {
	if ns := svc.updated.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Ready reports whether the service's routes can serve (a snapshot
// arrived).
func (svc *Service) Ready() bool { return svc.ready.Load() }

// start watches the service (and runs its active checks) until ctx ends
// or stop is called. Called with the Routes' mu held.
func (svc *Service) start(ctx context.Context) {
	ctx, svc.cancel = context.WithCancel(ctx)
	if svc.checkCfg.Enabled() {
		svc.mu.Lock()
		svc.checks = newActiveChecks(svc.name, svc.checkCfg, svc.env.Transport(svc.checkTLS), svc.env.Log)
		svc.checks.scheme = forward.BackendScheme(svc.checkTLS)
		svc.mu.Unlock()
		svc.running.Go(func() { svc.checks.run(ctx, svc.republish) })
	}
	svc.running.Go(func() { svc.runSessionCounts(ctx) })
	svc.running.Go(func() {
		err := svc.env.Source.Watch(ctx, svc.name, svc.update)
		if err != nil && !errors.Is(err, context.Canceled) {
			svc.env.Log.Error("discovery stopped", "service", svc.name, "err", err)
		}
	})
}

// stop ends the watch and the active checks, and waits for both.
func (svc *Service) stop() {
	if svc.cancel != nil {
		svc.cancel()
	}
	svc.mu.Lock()
	if svc.firstCheck != nil {
		svc.firstCheck.Stop()
	}
	svc.mu.Unlock()
	svc.running.Wait()
}

// update is the Source's callback: one goroutine at a time.
func (svc *Service) update(s discovery.Snapshot) {
	svc.mu.Lock()
	prev := svc.snap
	svc.snap = &s
	svc.mu.Unlock()
	svc.env.Metrics.DiscoveryUpdate(svc.name, s, prev)
	svc.updated.Store(time.Now().UnixNano())
	svc.republish()
	// Ready only once the routes can serve from this snapshot: Consul has
	// answered, and has run the check of a backend at least (a check starts
	// critical until its first answer, so backends that are all unchecked
	// serve nothing yet: docker compose up --wait returned while the
	// README's first curl got 503). A check that never answers (a TTL
	// check nobody updates, one restored critical by a restarted agent)
	// holds readiness back for FirstCheckWait at most.
	switch {
	case svc.ready.Load():
		svc.env.Log.Debug("service changed", "service", svc.name, "backends", len(s.Backends), "stale", s.Stale)
	case !allUnchecked(s.Backends):
		if !svc.ready.Swap(true) {
			svc.env.Log.Info("service discovered", "service", svc.name, "backends", len(s.Backends), "stale", s.Stale)
		}
	default:
		svc.waitFirstCheck(len(s.Backends))
	}
}

// waitFirstCheck makes the service ready FirstCheckWait after the first
// snapshot whose backends were all unchecked, unless a check answers
// first (at once when FirstCheckWait is not positive).
func (svc *Service) waitFirstCheck(backends int) {
	wait := svc.env.FirstCheckWait
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.firstCheck != nil {
		return
	}
	svc.firstCheck = time.AfterFunc(max(wait, 0), func() {
		if !svc.ready.Swap(true) {
			svc.env.Log.Warn("service ready with no backend's health check answered yet", "service", svc.name,
				"backends", backends, "waited", wait)
		}
	})
}

// allUnchecked reports whether there are backends and none has had its
// health check answered yet.
func allUnchecked(backends []discovery.Backend) bool {
	for _, b := range backends {
		if !b.Unchecked {
			return false
		}
	}
	return len(backends) > 0
}

// republish rebuilds the set and every route's pickers from the last
// snapshot (after a snapshot or an active health check changed).
func (svc *Service) republish() {
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
		svc.env.Log.Warn("panic mode: too few backends look healthy to trust health checks; all but draining ones serve",
			"service", svc.name, "backends", len(set.Backends))
	} else if !set.Panic && prev != nil && prev.Panic {
		svc.env.Log.Info("panic mode over: health checks trusted again", "service", svc.name)
	}
	svc.env.Metrics.PanicMode(svc.name, set.Panic)
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
func (svc *Service) judgePanic(s discovery.Snapshot) {
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
func (svc *Service) effective(o registryOptions) registryOptions {
	if !svc.answered {
		o.panicThreshold = 0
	}
	return o
}

// forgetGone deletes the metric series of the backends in prev but not in
// set. Called with mu held.
func (svc *Service) forgetGone(prev, set *policy.Set) {
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
		svc.env.Metrics.BackendGone(svc.name, routes, b.ID)
	}
}

// hintMaps map each backend's cookie hint to it and back, built once per
// snapshot and shared by the service's routes.
type hintMaps struct {
	byHint map[session.Hint]*policy.Backend
	of     map[*policy.Backend]session.Hint
}

func (svc *Service) hints(set *policy.Set) hintMaps {
	h := hintMaps{byHint: make(map[session.Hint]*policy.Backend, len(set.Backends)),
		of: make(map[*policy.Backend]session.Hint, len(set.Backends))}
	for _, b := range set.Backends {
		hint := session.HintFor(svc.name, b.ID)
		h.byHint[hint], h.of[b] = b, hint
	}
	return h
}

// publishRoute builds rt's policy chain over set. Called with mu held.
func (svc *Service) publishRoute(rt *Route, set *policy.Set, hints hintMaps) {
	name, rc := rt.name, rt.spec.Route()
	chain, err := policy.NewChain(rc.Policy.Get(), set, policy.BuildOptions{
		HashHeader:     rc.Hash.Header.Get(),
		HashCookie:     rc.Hash.Cookie.Get(),
		TrustedProxies: svc.env.Trusted,
	}, func(from, to string) {
		svc.env.Metrics.Fallback(name, from, to)
		svc.env.Log.Debug("policy fallback", "route", name, "from", from, "to", to)
	})
	if err != nil {
		// Policies are validated at start; this is a bug, not bad input.
		svc.env.Log.Error("building policy chain", "route", name, "err", err)
		return
	}
	rt.state.Store(&routeState{set: set, chain: chain, hints: hints.byHint, hintOf: hints.of,
		series: newRouteSeries(svc.env.Metrics.Vectors(), name, set)})
}

// addRoute attaches rt and publishes its state at once when the service
// is already known.
func (svc *Service) addRoute(rt *Route) {
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
func (svc *Service) removeRoute(rt *Route) bool {
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

// Snapshot returns the last snapshot (nil before the first).
func (svc *Service) Snapshot() *discovery.Snapshot {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.snap
}

// reconfigure applies a reload's settings of the service's first route to
// its registry (breakers, slow start, health verdicts). Called with the
// Routes' mu held.
func (svc *Service) reconfigure(rs config.RouteSettings, needsRestart *[]string) (applied []string) {
	svc.ttl.Store(int64(rs.Sticky.TTL.Get()))
	opts := newRegistryOptions(rs)
	if !reflect.DeepEqual(rs.HealthCheck, svc.checkCfg) {
		*needsRestart = append(*needsRestart, "health_check of service "+svc.name)
	} else if svc.checkCfg.Enabled() && rs.BackendProtocol.Get() != svc.checkTLS.BackendProtocol() {
		// The running checks speak the protocol they started with.
		*needsRestart = append(*needsRestart, "health_check of service "+svc.name+" (backend_protocol)")
	}
	svc.mu.Lock()
	same := svc.opts == opts
	svc.opts = opts
	// Under mu, so a snapshot's judgePanic cannot come in between.
	reset := !same && svc.registry.Reconfigure(svc.effective(opts).Options(svc))
	svc.mu.Unlock()
	if same {
		return nil
	}
	if reset {
		svc.env.Log.Info("circuit breakers replaced: their settings changed", "service", svc.name)
		applied = append(applied, "service "+svc.name+": breaker settings (breakers start closed)")
	}
	applied = append(applied, "service "+svc.name+": registry settings")
	svc.republish() // health verdicts under the new settings
	return applied
}

// registryOptions is what a service's registry is built from: the
// settings of its first route that apply per service, comparable so a
// reload can tell whether they changed.
type registryOptions struct {
	breaker        policy.BreakerSettings
	slowStart      time.Duration
	warningUsable  bool
	panicThreshold float64
}

func newRegistryOptions(rs config.RouteSettings) registryOptions {
	return registryOptions{breaker: rs.Breaker.BreakerSettings(), slowStart: rs.SlowStart.Get(),
		warningUsable: rs.WarningUsable.Get(), panicThreshold: max(rs.PanicThreshold.Get(), 0)}
}

// Options are the registry's options for these settings.
func (o registryOptions) Options(svc *Service) policy.Options {
	name, env := svc.name, svc.env
	return policy.Options{
		Breaker: o.breaker, SlowStart: o.slowStart, WarningUsable: o.warningUsable, PanicThreshold: o.panicThreshold,
		OnBreakerChange: func(id string, from, to policy.BreakerState) {
			// Runs under the breaker's mutex: log and count, nothing more.
			env.Log.Warn("circuit breaker", "service", name, "backend", id, "from", from.String(), "to", to.String())
			env.Metrics.BreakerChange(name, id, to)
		},
	}
}
