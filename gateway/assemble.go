package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/metrics"
	"github.com/latchgw/latch/gateway/tlsserve"
	"github.com/latchgw/latch/gateway/tracing"
	"github.com/latchgw/latch/session"
)

// Assemble builds a Gateway and its parts from a validated config: the
// Consul source (or the static one), the cookie codec, the session store
// (Redis or memory) and the session layer. close releases what it opened.
// It is cmd/latch's wiring, shared with the integration tests so they run
// exactly what users run. accessLog, when set, receives the access log in
// batches (cmd/latch passes stderr, where log goes line by line), unless
// log.access_file names a file of its own; reopen is relayed to Run's log
// writer (Deps.ReopenAccessLog: cmd/latch passes SIGUSR1).
func Assemble(cc *config.Compiled, log *slog.Logger, accessLog io.Writer, reopen <-chan os.Signal) (g *Gateway, close func(), err error) {
	cfg := cc.Config()
	deps := Deps{Logger: log, Metrics: metrics.New(), AccessLog: accessLog, ReopenAccessLog: reopen}
	closers := []func(){}
	close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if cfg.Log.AccessFile != "" && cfg.Log.Access.Get() {
		f, err := accesslog.OpenFile(cfg.Log.AccessFile)
		if err != nil {
			return nil, close, fmt.Errorf("log.access_file: %w", err)
		}
		closers = append(closers, func() { _ = f.Close() })
		deps.AccessLog = f
	}
	if cfg.Consul.Disabled {
		static := discovery.NewStatic(nil)
		for _, r := range cfg.Routes {
			backends, err := discovery.ParseStatic(r.Service, r.Backends)
			if err != nil {
				return nil, close, fmt.Errorf("backends: %w", err)
			}
			static.Set(r.Service, backends)
		}
		deps.Source = static
	} else {
		c := cfg.Consul
		client, addr, err := discovery.NewClient(discovery.ClientConfig{ // empty fields: CONSUL_* variables
			Address: c.Address, Datacenter: c.Datacenter, Token: c.Token, TokenFile: c.TokenFile,
			CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ServerName: c.TLS.ServerName,
		})
		if err != nil {
			return nil, close, fmt.Errorf("consul: %w", err)
		}
		opts := discovery.ConsulOptions{Logger: log, EmptyGrace: cfg.Discovery.EmptyGrace.Get(), Tag: c.Tag, Consistency: c.Consistency}
		deps.Source = discovery.NewConsul(client, opts)
		deps.Catalog = discovery.NewCatalog(client, opts)
		log.Info("using consul", "address", addr, "datacenter", c.Datacenter, "tag", c.Tag, "consistency", c.Consistency)
	}

	secrets := secretBytes(cfg.Cookie.Secrets)
	if len(secrets) == 0 && cfg.Cookie.SecretFile != "" {
		secret, created, err := session.LoadOrCreateSecret(cfg.Cookie.SecretFile)
		if err != nil {
			return nil, close, err
		}
		if created {
			log.Info("generated a cookie secret", "file", cfg.Cookie.SecretFile)
		}
		secrets = append(secrets, secret)
	}
	if len(secrets) == 0 {
		secrets = append(secrets, session.RandomSecret())
		log.Warn("no cookie secret set (-cookie-secret / " + config.EnvCookieSecret + "): using a random one; " +
			"replicas will not share sessions and a restart forgets them")
	}
	codec, err := session.NewCodec(secrets)
	if err != nil {
		return nil, close, fmt.Errorf("cookie.secrets: %w", err)
	}

	var store session.Store
	var rdb redis.UniversalClient
	if cfg.Redis.URL != "" {
		session.LogRedisTo(log)
		if rdb, err = session.ParseRedisURL(cfg.Redis.URL); err != nil {
			return nil, close, fmt.Errorf("redis.url: %w", err)
		}
		closers = append(closers, func() { _ = rdb.Close() })
		store = session.NewRedisStore(rdb)
	} else {
		store = session.NewMemoryStore(cfg.Redis.CacheSize.Get(), nil)
		log.Warn("no redis URL (-redis / " + config.EnvRedisURL + "): sessions are kept in memory, " +
			"not shared between replicas and lost on restart")
	}
	deps.Affinity = session.NewAffinity(session.Options{
		Store: store, Codec: codec, CacheSize: cfg.Redis.CacheSize.Get(), CacheTTL: cfg.Redis.CacheTTL.Get(),
		StoreTimeout: cfg.Redis.Timeout.Get(), Logger: log, Metrics: deps.Metrics,
	})
	var m *acme.Manager
	if cfg.TLS.ACME.Enabled() {
		// g is built after the manager, before any handshake.
		if m, err = tlsserve.NewACME(cfg, rdb, log, deps.Metrics.Registry(), func(host string) bool { return g.KnowsHost(host) }); err != nil {
			return nil, close, err
		}
		deps.GetCertificate, deps.NextProtos = m.GetCertificate, []string{acme.NextProto}
		deps.Challenge = m.HTTPChallenge(http.NotFoundHandler())
	}
	if deps.Tracing, err = tracing.New(context.Background(), cfg.Tracing, log); err != nil {
		return nil, close, err
	}
	if deps.Tracing != nil {
		// Run by cmd/latch after Run returned (SIGTERM): the spans of the
		// last requests are flushed before the process exits.
		closers = append(closers, func() {
			if err := deps.Tracing.Close(); err != nil {
				log.Warn("flushing traces", "err", err)
			}
		})
		log.Info("tracing on", "endpoint", cfg.Tracing.Endpoint, "protocol", cfg.Tracing.Protocol, "sampler", cfg.Tracing.Sampler)
	}
	g, err = New(cc, deps)
	if err != nil {
		return nil, close, err
	}
	g.acme = m
	return g, close, nil
}

// KnowsHost reports whether a route of the moment (from the file or from
// Consul tags) names host: tls.acme.route_hosts obtains certificates for
// exactly those.
func (g *Gateway) KnowsHost(host string) bool { return g.routes.Table().KnowsHost(host) }
