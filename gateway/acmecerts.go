package gateway

import (
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// KnowsHost reports whether a route of the moment (from the file or from
// Consul tags) names host: tls.acme.route_hosts obtains certificates for
// exactly those.
func (g *Gateway) KnowsHost(host string) bool { return g.routes.Table().KnowsHost(host) }

// newACME builds tls.acme's certificate manager: its storage in Redis
// (rdb) or a directory, its on-demand decisions asked of the gateway g
// returns (built after the manager, before any handshake).
func newACME(cfg config.Config, rdb redis.UniversalClient, log *slog.Logger, metrics *Metrics, g func() *Gateway) (*acme.Manager, error) {
	a := cfg.TLS.ACME
	o := acme.Options{ACME: a, Logger: log, Metrics: metrics.reg, KnowsHost: func(host string) bool { return g().KnowsHost(host) }}
	where := a.Storage
	if a.Storage == "redis" {
		o.Storage = acme.BlobStorage(session.NewBlobs(rdb, "latch-acme"))
	} else if where == "" {
		where = acme.DefaultDir()
	}
	m, err := acme.New(o)
	if err != nil {
		return nil, err
	}
	log.Info("acme: certificates stored", "storage", where)
	return m, nil
}
