package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/consul/api"
)

// errRequery ends a query the leader probe cancelled: ask again at once,
// without an index.
var errRequery = errors.New("discovery: query again")

// leaderProbe is what a watch (service or catalog) and its leader probe
// share: whether the servers have a leader, and the query in flight, which
// the probe ends when that changes (errRequery) or when the agent does
// not answer the probe (an error: the watch goes stale).
//
// A blocking query cannot tell by itself: it may wait minutes on a server
// that lost its quorum, keep a stale flag after the election, or hang on a
// partition that drops packets without refusing anything, the connection
// open and silent until the wait (5 minutes) ends.
type leaderProbe struct {
	leaderless atomic.Bool
	mu         sync.Mutex
	cancel     context.CancelCauseFunc // the query in flight
}

// query returns the context of the next query, which the probe may end;
// done releases it.
func (p *leaderProbe) query(ctx context.Context) (qctx context.Context, done func()) {
	qctx, cancel := context.WithCancelCause(ctx)
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	return qctx, func() { cancel(nil) }
}

// end ends the query in flight with cause.
func (p *leaderProbe) end(cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		p.cancel(cause)
	}
}

// failed is the error a query failed with: the probe's cause when the
// probe ended it (errRequery, or the probe's own failure), else err.
func (p *leaderProbe) failed(ctx, qctx context.Context, err error) error {
	if qctx.Err() != nil && ctx.Err() == nil {
		if cause := context.Cause(qctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
	}
	return err
}

// noteLeader records what a query without an index said about the leader
// (blocking answers do not say: Consul 1.22 answers every one with
// KnownLeader false), logging when it changes.
func (p *leaderProbe) noteLeader(o *ConsulOptions, what string, known bool) {
	switch was := p.leaderless.Swap(!known); {
	case !known && !was:
		o.Logger.Warn("consul answers without a cluster leader: its state may be old, marked stale", "watch", what)
	case known && was:
		o.Logger.Info("consul has a cluster leader again", "watch", what)
	}
}

// run asks the agent every LeaderCheck (StaleWait while leaderless)
// whether the servers have a leader, waiting at most ProbeTimeout for the
// answer. A different answer than the watch believes ends the query in
// flight with errRequery; no answer ends it as failed, so the watch marks
// its state stale and retries (with backoff) until the agent answers again.
func (p *leaderProbe) run(ctx context.Context, client *api.Client, o *ConsulOptions) {
	for {
		every := o.LeaderCheck
		if p.leaderless.Load() {
			every = o.StaleWait
		}
		if !sleep(ctx, every) {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
		addr, err := client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(pctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.end(fmt.Errorf("consul leader probe: %w", err))
		case (addr != "") == p.leaderless.Load():
			p.end(errRequery)
		}
	}
}
