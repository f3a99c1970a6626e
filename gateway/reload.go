package gateway

import (
	"fmt"
	"maps"
	"slices"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/admin"
	"github.com/latchgw/latch/gateway/config"
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
		g.metrics.Reloaded(false)
		g.log.Error("configuration reload refused: nothing changed", "err", err)
		return ReloadResult{}, err
	}
	res, err := g.apply(cc)
	if err != nil {
		g.metrics.Reloaded(false)
		g.log.Error("configuration reload refused: nothing changed", "err", err)
		return ReloadResult{}, err
	}
	g.metrics.Reloaded(true)
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
	g.metrics.RestartPending(fields)
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
	g.mu.Lock()
	g.cfg = cc
	g.mu.Unlock()
	res.Applied = append(res.Applied, g.routes.Swap(cc, &res.NeedsRestart)...)
	if len(staticBackends) > 0 {
		res.Applied = append(res.Applied, "backends")
	}
	slices.Sort(res.NeedsRestart)
	return res, nil
}

// secretBytes is the cookie secrets as the codec takes them.
func secretBytes(secrets config.List) [][]byte {
	out := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		out = append(out, []byte(s))
	}
	return out
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
