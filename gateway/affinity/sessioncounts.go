package affinity

import (
	"context"
	"slices"
	"time"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Live-session counts for least_sessions: a background refresh per
// service reads each backend's live sessions from the session store and
// applies them to the service's registry, where the policy reads them
// with atomic loads. The request path adds its own new sessions
// (countSession) and never waits on the store.

// sessionCountEvery is how often a replica reads the counts: at most once
// a second, as issue 26 asks, so N replicas cost the store 2 commands per
// backend per second each.
const sessionCountEvery = time.Second

// countsSessions reports whether a sticky route of svc uses least_sessions.
func (svc *Service) countsSessions() bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	for _, rt := range svc.routes {
		if rt.sticky && slices.Contains(rt.spec.Route().Policy.Get(), "least_sessions") {
			return true
		}
	}
	return false
}

// runSessionCounts refreshes svc's live-session counts every
// sessionCountEvery until ctx ends, while a route needs them. A failed
// read keeps the last counts (the replica's own new sessions keep adding
// to them) and lets latch_session_counts_age_seconds grow (computed at
// each scrape by the Routes' collector).
func (svc *Service) runSessionCounts(ctx context.Context) {
	t := time.NewTicker(sessionCountEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !svc.countsSessions() {
			continue
		}
		c := svc.registry.BeginSessionCount()
		if len(c.IDs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, sessionCountEvery)
			counts, err := svc.env.Sessions.Sessions(cctx, svc.name, c.IDs)
			cancel()
			if err == nil {
				c.Apply(counts, time.Now())
			} else {
				svc.env.Log.Debug("counting sessions", "service", svc.name, "err", err)
			}
		}
	}
}

// countSession counts a new (or re-pinned) session on b for least_sessions
// until the next refresh includes it: one atomic add.
func countSession(b *policy.Backend, k session.Kind) {
	if k == session.KindNew || k == session.KindRepinned {
		b.SessionStarted()
	}
}
