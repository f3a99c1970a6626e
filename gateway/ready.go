package gateway

import (
	"context"
	"time"
)

// Ready reports whether latch can route: every service of the config and,
// when routes come from tags, the catalog and every service it routed have
// answered once. Once ready it stays ready: a later outage of Consul is
// served from the last snapshot (marked stale), not by leaving the load
// balancer's pool, and a service that appears later does not take the
// replica out.
func (g *Gateway) Ready() bool { return len(g.Waiting()) == 0 }

// Waiting lists what readiness still waits for (none once ready).
func (g *Gateway) Waiting() []string {
	if g.wasReady.Load() {
		return nil
	}
	var waiting []string
	if g.catalog != nil && g.c.Consul.RoutesFromTags.Get() && !g.catalogSeen.Load() {
		waiting = append(waiting, "the Consul catalog (routes from tags)")
	}
	for _, svc := range g.routes.Services() {
		if !svc.Ready() {
			waiting = append(waiting, "service "+svc.Name())
		}
	}
	if len(waiting) == 0 {
		g.wasReady.Store(true)
	}
	return waiting
}

// awaitReady waits until the gateway is Ready, at most readyWait; false
// when ctx ended first. A shared listener (server.reuse_port) waits for it
// before accepting: the kernel hands it connections from the moment it
// listens, and a latch started to replace another would otherwise answer
// them 503 until discovery has answered. They wait in its accept queue
// instead; after readyWait latch serves anyway (503 for a service still
// undiscovered), so a replacement that never gets ready does not hold its
// share of connections forever.
func (g *Gateway) awaitReady(ctx context.Context) bool {
	deadline := time.Now().Add(readyWait)
	for !g.Ready() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !g.Ready() {
		g.log.Warn("serving the shared listener before ready", "waited", readyWait.String(), "waiting_for", g.Waiting())
	}
	return ctx.Err() == nil
}

// readyWait bounds awaitReady.
const readyWait = 30 * time.Second
