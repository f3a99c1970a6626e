package gateway

import (
	"context"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/statuspage"
)

// The status page's data: the gateway's live state (services, backends,
// routes, the session store) plus rates from a Sampler that reads latch's
// own Prometheus counters every 2s, so the request path pays nothing for
// the page.

// Sampler keys: kind, service, backend joined by NUL.
func sampleKey(kind, service, backend string) string {
	return kind + "\x00" + service + "\x00" + backend
}

// rateWindow is the span of the page's request and error rates.
const rateWindow = time.Minute

// newStatusSampler builds the sampler of g's counters (5 minutes, every 2s).
func (g *Gateway) newStatusSampler() *statuspage.Sampler {
	return statuspage.NewSampler(g.statusCounters, 2*time.Second, 5*time.Minute)
}

// statusPage is the page served on the admin listener.
func (g *Gateway) statusPage() *statuspage.Page {
	return statuspage.New(statuspage.Options{Status: g.status, TokenRequired: g.c.Admin.Token != ""})
}

// routeServices maps route names to their service names.
func (g *Gateway) routeServices() map[string]string {
	routes, _ := g.routes.All()
	out := make(map[string]string, len(routes))
	for _, rt := range routes {
		out[rt.Name()] = rt.Service()
	}
	return out
}

// statusCounters reads the counters the page needs from latch's registry:
// requests, 5xx answers and re-pins per (service, backend), cache lookups,
// fallbacks per (route, policy) and the last fresh discovery answer.
func (g *Gateway) statusCounters() map[string]float64 {
	families, err := g.metrics.reg.Gather()
	if err != nil {
		g.log.Debug("status page: gathering metrics", "err", err)
	}
	services := g.routeServices()
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			l := labels(m)
			switch f.GetName() {
			case "latch_requests_total":
				svc := services[l["route"]]
				out[sampleKey("req", svc, l["backend"])] += m.GetCounter().GetValue()
				if l["code"] == "5xx" {
					out[sampleKey("err", svc, l["backend"])] += m.GetCounter().GetValue()
				}
			case "latch_sessions_total":
				if l["outcome"] == "repinned" {
					out[sampleKey("repin", services[l["route"]], l["backend"])] += m.GetCounter().GetValue()
				}
			case "latch_session_cache_total":
				out[sampleKey("cache", l["result"], "")] += m.GetCounter().GetValue()
			case "latch_policy_fallbacks_total":
				out[sampleKey("fallback", l["route"], l["from"])] += m.GetCounter().GetValue()
			case "latch_discovery_last_fresh_timestamp_seconds":
				out[sampleKey("fresh", l["service"], "")] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// status is the page's picture of g now.
func (g *Gateway) status(ctx context.Context) statuspage.Status {
	now := time.Now()
	st := statuspage.Status{Time: now.UTC(), Services: []statuspage.Service{}, Routes: []statuspage.Route{}, NeedsRestart: []string{}}
	st.Store = statuspage.Store{Kind: "memory", Up: g.affinity.StoreUp(), Reachable: true,
		PendingPins: g.affinity.Pending(), CacheHitRatio: -1}
	if g.c.Redis.URL != "" {
		st.Store.Kind = "redis"
	}
	if hit, miss := g.sampler.Rate(sampleKey("cache", "hit", ""), rateWindow),
		g.sampler.Rate(sampleKey("cache", "miss", ""), rateWindow); hit+miss > 0 {
		st.Store.CacheHitRatio = hit / (hit + miss)
	}

	services := g.routes.Services()
	routes, conflicts := g.routes.All()
	st.Conflicts = conflicts
	g.mu.Lock()
	st.NeedsRestart = append(st.NeedsRestart, g.pendingRestart...)
	g.mu.Unlock()

	for _, svc := range services {
		s, ok := g.serviceStatus(ctx, svc, now)
		st.Store.Reachable = st.Store.Reachable && ok
		st.Services = append(st.Services, s)
	}
	for _, rt := range routes {
		rc := rt.Spec().Route()
		r := statuspage.Route{Name: rt.Name(), Host: rc.Host, PathPrefix: rc.PathPrefix,
			Service: rt.Service(), Sticky: rt.Sticky(), FromTags: rt.Spec().FromTags()}
		for _, p := range rt.Policies() {
			r.Chain = append(r.Chain, statuspage.Step{Policy: p,
				HandedOn: g.sampler.Latest(sampleKey("fallback", rt.Name(), p))})
		}
		st.Routes = append(st.Routes, r)
	}
	return st
}

// serviceStatus is svc's part of the status; ok is false when the session
// store could not count its sessions.
func (g *Gateway) serviceStatus(ctx context.Context, svc *affinity.Service, now time.Time) (statuspage.Service, bool) {
	name := svc.Name()
	s := statuspage.Service{Name: name, Backends: []statuspage.Backend{}, UpdatedAgeS: -1, FreshAgeS: -1,
		StepS: g.sampler.Step().Seconds(), WindowS: g.sampler.Window().Seconds()}
	if snap := svc.Snapshot(); snap != nil {
		s.Stale = snap.Stale
	}
	if t := svc.Updated(); !t.IsZero() {
		s.UpdatedAgeS = now.Sub(t).Seconds()
	}
	if ts := g.sampler.Latest(sampleKey("fresh", name, "")); ts > 0 {
		s.FreshAgeS = now.Sub(time.Unix(0, int64(ts*1e9))).Seconds()
	}
	set := svc.Set()
	if set == nil {
		return s, true
	}
	s.Panic = set.Panic
	ids := make([]string, 0, len(set.Backends))
	for _, b := range set.Backends {
		ids = append(ids, b.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	counts, err := g.affinity.Sessions(ctx, name, ids)
	cancel()
	for _, b := range set.Backends {
		if err == nil {
			s.Sessions += counts[b.ID]
		}
	}
	if err != nil {
		s.Sessions = -1
	}
	for _, b := range set.Backends {
		state := affinity.BackendState(b)
		row := statuspage.Backend{ID: b.ID, Address: b.Addr, Health: b.Health.String(), Drained: b.Drained(),
			State: state, AcceptsNew: b.CanTake(), Weight: b.Weight,
			Breaker: b.Breaker().String(), BreakerSince: b.BreakerSince().UTC(),
			InFlight: b.InFlight(), EWMAMS: float64(b.Latency().Microseconds()) / 1000,
			ReqRate:   g.sampler.Rate(sampleKey("req", name, b.ID), rateWindow),
			ErrRate:   g.sampler.Rate(sampleKey("err", name, b.ID), rateWindow),
			Sessions:  -1,
			SlowStart: b.SlowStart(),
			Target:    set.Share(b),
			Requests:  g.sampler.Series(sampleKey("req", name, b.ID)),
			Repins:    g.sampler.Series(sampleKey("repin", name, b.ID)),
		}
		if err == nil {
			row.Sessions = counts[b.ID]
			if s.Sessions > 0 {
				row.Share = float64(row.Sessions) / float64(s.Sessions)
			}
		}
		s.Backends = append(s.Backends, row)
	}
	return s, err == nil
}
