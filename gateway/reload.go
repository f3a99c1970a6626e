package gateway

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/admin"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// A reload (SIGHUP, POST /admin/reload) applies a new configuration while
// requests keep flowing, the way a discovery snapshot does: routes get new
// route objects and the table is swapped atomically; services, and with
// them every backend's registry state (breakers, latency, in-flight
// counts, drains), stay as long as some route uses them; sessions live in
// the session layer, which only gets a new cookie codec when the secrets
// changed. What the running process cannot change (listeners, the Redis
// and Consul clients, the servers' and the transport's settings) is
// reported as needing a restart, and the rest applies.

// ErrReloadUnavailable is returned by ReloadConfig before SetConfigLoader.
var ErrReloadUnavailable = admin.ErrReloadUnavailable

// SetConfigLoader sets how ReloadConfig reads the configuration: as at
// start, from the file, the environment and the flags (cmd/latch passes
// config.Load over its arguments again).
func (g *Gateway) SetConfigLoader(load func() (*config.Compiled, error)) {
	g.reloadMu.Lock()
	g.load = load
	g.reloadMu.Unlock()
}

// ReloadResult is what a reload applied and what it could not.
type ReloadResult struct {
	// Applied lists what changed and took effect ("routes", "cookie.secrets",
	// "routes[web]: breaker settings", ...); empty when nothing changed.
	Applied []string `json:"applied"`
	// NeedsRestart lists the changed fields that only a restart applies.
	NeedsRestart []string `json:"needs_restart"`
}

// ReloadConfig re-reads the configuration through the loader (the file,
// the environment and the flags, layered as at start) and applies it. A
// configuration that does not load or validate changes nothing: the error
// names the field, is logged and counted (latch_config_reload_total
// {result="error"}).
func (g *Gateway) ReloadConfig() (ReloadResult, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.load == nil {
		return ReloadResult{}, ErrReloadUnavailable
	}
	cc, err := g.load()
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		g.log.Error("configuration reload refused: nothing changed", "err", err)
		return ReloadResult{}, err
	}
	res, err := g.apply(cc)
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		g.log.Error("configuration reload refused: nothing changed", "err", err)
		return ReloadResult{}, err
	}
	g.metrics.reloads.WithLabelValues("ok").Inc()
	g.metrics.reloadedAt.Set(float64(time.Now().UnixNano()) / 1e9)
	g.setPendingRestart(res.NeedsRestart)
	if len(res.NeedsRestart) > 0 {
		g.log.Warn("configuration reload: changes that need a restart are not applied until latch restarts", "fields", res.NeedsRestart)
	}
	g.log.Info("configuration reloaded", "applied", res.Applied, "needs_restart", res.NeedsRestart)
	return res, nil
}

// setPendingRestart records what the last reload left waiting for a
// restart, for the status page and latch_config_restart_pending.
func (g *Gateway) setPendingRestart(fields []string) {
	g.mu.Lock()
	g.pendingRestart = slices.Clone(fields)
	g.mu.Unlock()
	g.metrics.restartPending.Reset()
	for _, f := range fields {
		g.metrics.restartPending.WithLabelValues(f).Set(1)
	}
}

// PendingRestart lists the settings the configuration last read changes
// but only a restart applies (empty until a reload finds some).
func (g *Gateway) PendingRestart() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.pendingRestart)
}

// apply swaps in what cc changes. Everything that can fail is checked
// before anything changes.
//
// What needs a restart is judged against the config the process started
// with (g.c), not the one read last: issue 29 saw the second reload of
// the same file answer "needs_restart": [] as nothing had changed since
// the first, though nothing had restarted either.
func (g *Gateway) apply(cc *config.Compiled) (ReloadResult, error) {
	next := cc.Config()
	g.mu.Lock()
	prev := g.cfg.Config()
	g.mu.Unlock()
	res := ReloadResult{Applied: []string{}, NeedsRestart: g.c.NeedsRestart(next)}

	var codec *session.Codec
	if len(next.Cookie.Secrets) == 0 && len(g.c.Cookie.Secrets) > 0 {
		// The secret would come from cookie.secret_file or be random:
		// neither is a rotation, and the second forgets every session.
		// The codec keeps the secrets it has until a restart.
		res.NeedsRestart = append(res.NeedsRestart, "cookie.secrets (removed)")
	}
	if len(next.Cookie.Secrets) > 0 && !slices.Equal(prev.Cookie.Secrets, next.Cookie.Secrets) {
		var err error
		if codec, err = session.NewCodec(secretBytes(next.Cookie.Secrets)); err != nil {
			return ReloadResult{}, fmt.Errorf("cookie.secrets: %w", err)
		}
	}
	static, _ := g.source.(*discovery.Static)
	staticBackends := map[string][]discovery.Backend{}
	if static != nil && next.Consul.Disabled {
		had := map[string][]string{}
		for _, r := range prev.Routes {
			had[r.Service] = r.Backends
		}
		for _, r := range next.Routes {
			if slices.Equal(had[r.Service], r.Backends) {
				continue
			}
			backends, err := discovery.ParseStatic(r.Service, r.Backends)
			if err != nil {
				return ReloadResult{}, fmt.Errorf("backends: %w", err)
			}
			staticBackends[r.Service] = backends
		}
	}

	// Certificates: a changed list loads whole or the reload is refused;
	// the same list is re-read below (a pair that fails keeps serving its
	// certificate, as when its files change).
	certsChanged := g.certs != nil && len(next.TLS.Certificates) > 0 && !slices.Equal(prev.TLS.Certificates, next.TLS.Certificates)
	if certsChanged {
		if err := g.ReloadCertificates(next.TLS.Certificates...); err != nil {
			return ReloadResult{}, err
		}
	}

	// Nothing fails from here on.
	if certsChanged {
		res.Applied = append(res.Applied, "tls.certificates")
	} else if g.certs != nil {
		_ = g.certs.Reload() // logged and counted per pair
		res.Applied = append(res.Applied, "tls.certificates (re-read)")
	}
	if codec != nil {
		g.affinity.SetCodec(codec)
		res.Applied = append(res.Applied, "cookie.secrets")
	}
	for _, name := range slices.Sorted(maps.Keys(staticBackends)) {
		static.Set(name, staticBackends[name])
	}
	res.Applied = append(res.Applied, g.swapRoutes(cc, &res)...)
	if len(staticBackends) > 0 {
		res.Applied = append(res.Applied, "backends")
	}
	g.mu.Lock()
	tags := g.lastTags
	bg := g.bg
	g.mu.Unlock()
	if tags != nil && bg != nil {
		// Tag routes take the new defaults, and yield to new file routes.
		g.applyTags(bg, tags)
	}
	slices.Sort(res.NeedsRestart)
	return res, nil
}

// swapRoutes replaces the file routes with cc's, reconfigures the services
// they keep and starts those they add; services left without routes stop.
// Per-backend state lives in each service's registry, which is kept.
func (g *Gateway) swapRoutes(cc *config.Compiled, res *ReloadResult) (applied []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.fileRoutes
	oldSpecs := make([]config.Route, len(old))
	for i, rt := range old {
		oldSpecs[i] = rt.spec.Route()
	}
	var routes []*route
	var started []*service
	reconfigured := map[string]bool{}
	for _, rc := range cc.Routes() {
		svc, existed := g.services[rc.Service()]
		if !existed {
			svc = g.serviceFor(rc.Service(), rc)
			started = append(started, svc)
		} else if !reconfigured[svc.name] {
			reconfigured[svc.name] = true
			applied = append(applied, svc.reconfigure(rc.Route().RouteSettings, res)...)
		}
		rt := newRoute(rc, svc)
		svc.addRoute(rt) // publishes its state from the service's current backends
		routes = append(routes, rt)
	}
	g.fileRoutes = routes
	g.cfg = cc
	g.storeTable()
	for _, rt := range old {
		if rt.service.removeRoute(rt) {
			rt.service.stop()
			delete(g.services, rt.service.name)
			g.log.Info("service no longer routed", "service", rt.service.name)
		}
	}
	if g.bg != nil {
		for _, svc := range started {
			svc.start(g.bg)
		}
	}
	g.retireTLSPools()
	newSpecs := make([]config.Route, len(routes))
	for i, rt := range routes {
		newSpecs[i] = rt.spec.Route()
	}
	if !reflect.DeepEqual(oldSpecs, newSpecs) {
		applied = append(applied, "routes")
	}
	return applied
}

// retireTLSPools has the forwarder close the backend TLS pools that no
// route uses any more, nor any service's active checks (they keep the
// transport of their service's first route). Called with g.mu held, after
// the routes changed.
func (g *Gateway) retireTLSPools() {
	var inUse []*config.Spec
	for _, rt := range g.fileRoutes {
		inUse = append(inUse, rt.spec)
	}
	for _, routes := range g.tagRoutes {
		for _, rt := range routes {
			inUse = append(inUse, rt.spec)
		}
	}
	for _, svc := range g.services {
		if svc.checkCfg.Enabled() { // it runs active checks (start)
			inUse = append(inUse, svc.checkTLS)
		}
	}
	g.fwd.RetireTLSPools(inUse)
}

// reconfigure applies a reload's settings of the service's first route to
// its registry (breakers, slow start, health verdicts). Called with g.mu
// held.
func (svc *service) reconfigure(rs config.RouteSettings, res *ReloadResult) (applied []string) {
	svc.ttl.Store(int64(rs.Sticky.TTL.Get()))
	opts := svc.registryOptions(rs)
	if !reflect.DeepEqual(rs.HealthCheck, svc.checkCfg) {
		res.NeedsRestart = append(res.NeedsRestart, "health_check of service "+svc.name)
	} else if svc.checkCfg.Enabled() && rs.BackendProtocol.Get() != svc.checkTLS.BackendProtocol() {
		// The running checks speak the protocol they started with.
		res.NeedsRestart = append(res.NeedsRestart, "health_check of service "+svc.name+" (backend_protocol)")
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
		svc.g.log.Info("circuit breakers replaced: their settings changed", "service", svc.name)
		applied = append(applied, "service "+svc.name+": breaker settings (breakers start closed)")
	}
	applied = append(applied, "service "+svc.name+": registry settings")
	svc.republish() // health verdicts under the new settings
	return applied
}

// secretBytes is the cookie secrets as the codec takes them.
func secretBytes(secrets config.List) [][]byte {
	out := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		out = append(out, []byte(s))
	}
	return out
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

func (svc *service) registryOptions(rs config.RouteSettings) registryOptions {
	return registryOptions{breaker: rs.Breaker.BreakerSettings(), slowStart: rs.SlowStart.Get(),
		warningUsable: rs.WarningUsable.Get(), panicThreshold: max(rs.PanicThreshold.Get(), 0)}
}

// Options are the registry's options for these settings.
func (o registryOptions) Options(svc *service) policy.Options {
	name, g := svc.name, svc.g
	return policy.Options{
		Breaker: o.breaker, SlowStart: o.slowStart, WarningUsable: o.warningUsable, PanicThreshold: o.panicThreshold,
		OnBreakerChange: func(id string, from, to policy.BreakerState) {
			// Runs under the breaker's mutex: log and count, nothing more.
			g.log.Warn("circuit breaker", "service", name, "backend", id, "from", from.String(), "to", to.String())
			g.metrics.breakerChange(name, id, to)
		},
	}
}

// ReloadCertificates re-reads every tls.certificates pair now (SIGHUP,
// POST /admin/reload): tlsserve.Certs.Reload, whose pairs given become the
// list instead, all or nothing. Without TLS it does nothing.
func (g *Gateway) ReloadCertificates(pairs ...config.Certificate) error {
	if g.certs == nil {
		return nil
	}
	return g.certs.Reload(pairs...)
}
