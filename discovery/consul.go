package discovery

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulOptions tune the blocking-query loops. The zero value is usable.
type ConsulOptions struct {
	// WaitTime is how long one blocking query may wait (default 5m; Consul
	// caps it at 10m and adds up to WaitTime/16 of jitter).
	WaitTime time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed queries
	// (defaults 250ms and 5s), with full jitter: a gateway should notice
	// Consul's return within seconds, and 5s still keeps a dead agent quiet.
	MinBackoff, MaxBackoff time.Duration
	// Logger gets one line per outage and recovery (default slog.Default()).
	Logger *slog.Logger
	// Rand returns numbers in [0,1) for the jitter (default math/rand/v2).
	Rand func() float64
}

func (o *ConsulOptions) defaults() {
	if o.WaitTime <= 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Consul is a Source that watches /v1/health/service/<name> with blocking
// queries. Safe for concurrent use: each Watch runs its own loop.
type Consul struct {
	client *api.Client
	opts   ConsulOptions
}

var _ Source = (*Consul)(nil)

// NewConsul returns a Source reading from client.
func NewConsul(client *api.Client, opts ConsulOptions) *Consul {
	opts.defaults()
	return &Consul{client: client, opts: opts}
}

// Watch implements Source. While Consul is unreachable the last snapshot is
// republished once with Stale set, and queries retry with backoff; the
// first good answer after that clears Stale.
func (c *Consul) Watch(ctx context.Context, service string, update func(Snapshot)) error {
	if service == "" {
		return errors.New("discovery: empty service name")
	}
	var last *Snapshot
	publish := func(s Snapshot) {
		if last != nil && last.Equal(s) {
			last.Index = s.Index
			return
		}
		last = &s
		update(s)
	}
	return blockingLoop(ctx, c.opts, "service "+service,
		func(ctx context.Context, idx uint64) (uint64, error) {
			q := (&api.QueryOptions{WaitIndex: idx, WaitTime: c.opts.WaitTime}).WithContext(ctx)
			entries, meta, err := c.client.Health().Service(service, "", false, q)
			if err != nil {
				return 0, err
			}
			s := Snapshot{Service: service, Index: meta.LastIndex, Backends: make([]Backend, 0, len(entries))}
			for _, e := range entries {
				if e.Service == nil {
					continue
				}
				s.Backends = append(s.Backends, FromEntry(e))
			}
			sortBackends(s.Backends)
			publish(s)
			return meta.LastIndex, nil
		},
		func() {
			if last != nil && !last.Stale {
				stale := *last
				stale.Stale = true
				publish(stale)
			}
		})
}

// blockingLoop runs fetch as Consul's blocking-query protocol asks
// (https://developer.hashicorp.com/consul/api-docs/features/blocking):
// the index returned is the next WaitIndex; an index that goes backwards
// or is 0 resets to 0; errors back off with jitter and call onError; a
// query answering at once with an unchanged index is slowed down, so a
// misbehaving agent never causes a hot loop.
func blockingLoop(ctx context.Context, opts ConsulOptions, what string,
	fetch func(ctx context.Context, idx uint64) (uint64, error), onError func()) error {
	bo := backoff{min: opts.MinBackoff, max: opts.MaxBackoff, rand: opts.Rand}
	var idx uint64
	failures, fast := 0, 0
	for {
		start := time.Now()
		next, err := fetch(ctx, idx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if failures == 0 {
				opts.Logger.Warn("consul unreachable: serving the last known state", "watch", what, "err", err)
			}
			onError()
			d := bo.delay(failures)
			failures++
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		if failures > 0 {
			opts.Logger.Info("consul reachable again", "watch", what, "after_failures", failures)
			failures = 0
		}
		prev := idx
		if next == 0 || next < prev {
			idx = 0 // a reset (snapshot restore, new agent): start over
		} else {
			idx = next
		}
		switch blocked := time.Since(start) >= 10*time.Millisecond; {
		case blocked:
			fast = 0 // a real blocking query
		case idx == 0 || next == prev:
			// No usable index, or an instant answer with no progress: not a
			// real blocking query, so slow down (more each time) rather than
			// spin.
			fast++
			if !sleep(ctx, bo.delay(min(fast-1, 10))) {
				return ctx.Err()
			}
		}
	}
}
