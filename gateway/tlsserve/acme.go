package tlsserve

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// NewACME builds tls.acme's certificate manager: its storage in Redis
// (rdb, when tls.acme.storage is "redis") or a directory, its series
// registered with reg, and its on-demand decisions (tls.acme.route_hosts)
// asked of knowsHost, which may be called from the first handshake on.
func NewACME(cfg config.Config, rdb redis.UniversalClient, log *slog.Logger, reg prometheus.Registerer, knowsHost func(host string) bool) (*acme.Manager, error) {
	a := cfg.TLS.ACME
	o := acme.Options{ACME: a, Logger: log, Metrics: reg, KnowsHost: knowsHost}
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
