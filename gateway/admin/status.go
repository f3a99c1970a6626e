package admin

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/latchgw/latch/gateway/statuspage"
)

// The status page's data: the gateway's live state (services, backends,
// routes, the session store: State and the session layer) plus rates from
// a Sampler that reads latch's own Prometheus counters every 2s, so the
// request path pays nothing for the page.

// Sampler keys: kind, service, backend joined by NUL.
func sampleKey(kind, service, backend string) string {
	return kind + "\x00" + service + "\x00" + backend
}

// rateWindow is the span of the page's request and error rates.
const rateWindow = time.Minute

// NewSampler builds the status page's sampler (5 minutes, every 2s) of
// the counters it needs from metrics, latch's registry: requests, 5xx
// answers and re-pins per (service, backend), cache lookups, fallbacks
// per (route, policy) and the last fresh discovery answer. Its owner runs
// it (Sampler.Run).
func NewSampler(metrics prometheus.Gatherer, state State, log *slog.Logger) *statuspage.Sampler {
	return statuspage.NewSampler(func() map[string]float64 { return counters(metrics, state, log) }, 2*time.Second, 5*time.Minute)
}

// counters is one reading of NewSampler's counters.
func counters(metrics prometheus.Gatherer, state State, log *slog.Logger) map[string]float64 {
	families, err := metrics.Gather()
	if err != nil {
		log.Debug("status page: gathering metrics", "err", err)
	}
	routes, _ := state.Routes()
	services := make(map[string]string, len(routes)) // route → service
	for _, rt := range routes {
		services[rt.Name] = rt.Service
	}
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

// labels are m's labels by name.
func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// status is the page's picture of the gateway now.
func (a *API) status(ctx context.Context) statuspage.Status {
	now := time.Now()
	sampler := a.o.Sampler
	st := statuspage.Status{Time: now.UTC(), Services: []statuspage.Service{}, Routes: []statuspage.Route{}, NeedsRestart: []string{}}
	st.Store = statuspage.Store{Kind: a.o.StoreKind, Up: a.o.Affinity.StoreUp(), Reachable: true,
		PendingPins: a.o.Affinity.Pending(), CacheHitRatio: -1}
	if hit, miss := sampler.Rate(sampleKey("cache", "hit", ""), rateWindow),
		sampler.Rate(sampleKey("cache", "miss", ""), rateWindow); hit+miss > 0 {
		st.Store.CacheHitRatio = hit / (hit + miss)
	}
	routes, conflicts := a.o.State.Routes()
	st.Conflicts = slices.Clone(conflicts)
	st.NeedsRestart = append(st.NeedsRestart, a.o.State.PendingRestart()...)

	for _, svc := range a.o.State.Services() {
		s, ok := a.serviceStatus(ctx, svc, now)
		st.Store.Reachable = st.Store.Reachable && ok
		st.Services = append(st.Services, s)
	}
	for _, rt := range routes {
		r := statuspage.Route{Name: rt.Name, Host: rt.Host, PathPrefix: rt.PathPrefix,
			Service: rt.Service, Sticky: rt.Sticky, FromTags: rt.FromTags}
		names := rt.Policy
		if len(rt.Chain) > 0 {
			names = rt.Chain
		}
		for _, p := range names {
			r.Chain = append(r.Chain, statuspage.Step{Policy: p,
				HandedOn: sampler.Latest(sampleKey("fallback", rt.Name, p))})
		}
		st.Routes = append(st.Routes, r)
	}
	return st
}

// serviceStatus is svc's part of the status; ok is false when the session
// store could not count its sessions.
func (a *API) serviceStatus(ctx context.Context, svc Service, now time.Time) (statuspage.Service, bool) {
	sampler := a.o.Sampler
	s := statuspage.Service{Name: svc.Name, Backends: []statuspage.Backend{}, UpdatedAgeS: -1, FreshAgeS: -1,
		StepS: sampler.Step().Seconds(), WindowS: sampler.Window().Seconds()}
	if snap := svc.Snapshot; snap != nil {
		s.Stale = snap.Stale
	}
	if !svc.Updated.IsZero() {
		s.UpdatedAgeS = now.Sub(svc.Updated).Seconds()
	}
	if ts := sampler.Latest(sampleKey("fresh", svc.Name, "")); ts > 0 {
		s.FreshAgeS = now.Sub(time.Unix(0, int64(ts*1e9))).Seconds()
	}
	set := svc.Backends
	if set == nil {
		return s, true
	}
	s.Panic = set.Panic
	counts, err := a.sessionCounts(ctx, svc)
	for _, b := range set.Backends {
		if err == nil {
			s.Sessions += counts[b.ID]
		}
	}
	if err != nil {
		s.Sessions = -1
	}
	for _, b := range set.Backends {
		row := statuspage.Backend{ID: b.ID, Address: b.Addr, Health: b.Health.String(), Drained: b.Drained(),
			State: a.o.BackendState(b), AcceptsNew: b.CanTake(), Weight: b.Weight,
			Breaker: b.Breaker().String(), BreakerSince: b.BreakerSince().UTC(),
			InFlight: b.InFlight(), EWMAMS: float64(b.Latency().Microseconds()) / 1000,
			ReqRate:   sampler.Rate(sampleKey("req", svc.Name, b.ID), rateWindow),
			ErrRate:   sampler.Rate(sampleKey("err", svc.Name, b.ID), rateWindow),
			Sessions:  -1,
			SlowStart: b.SlowStart(),
			Target:    set.Share(b),
			Requests:  sampler.Series(sampleKey("req", svc.Name, b.ID)),
			Repins:    sampler.Series(sampleKey("repin", svc.Name, b.ID)),
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
