package affinity

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/policy"
)

// backendCollector exports each live backend's state, read at scrape time
// from the services' current sets: nothing on the request path, series
// present from a backend's first appearance, and gone with the backend
// (the set no longer lists it). It also exports how old each service's
// live-session counts are, as of the scrape.
type backendCollector struct {
	rs                                  *Routes
	up, health, inFlight, drained, brkr *prometheus.Desc
	countsAge                           *prometheus.Desc
}

// healthStates are latch_backend_health's state values, as the status
// page names them: discovery's health, or draining when drained.
var healthStates = []string{
	discovery.Passing.String(), discovery.Warning.String(),
	discovery.Critical.String(), discovery.Draining.String(),
}

// Collector exports the state of rs's backends at scrape time
// (latch_backend_up, _health, _in_flight, _drained, latch_breaker_state)
// and the age of least_sessions' counts (latch_session_counts_age_seconds):
// register it in the gateway's registry.
func (rs *Routes) Collector() prometheus.Collector {
	sb := []string{"service", "backend"}
	return &backendCollector{rs: rs,
		up: prometheus.NewDesc("latch_backend_up",
			"1 while the backend can take new requests (health, or panic mode, lets it; breaker not open; not drained), else 0.", sb, nil),
		health: prometheus.NewDesc("latch_backend_health",
			"1 for the backend's current state (passing, warning, critical, draining: drained or Consul maintenance), 0 for the others.",
			[]string{"service", "backend", "state"}, nil),
		inFlight: prometheus.NewDesc("latch_backend_in_flight", "Requests being served by the backend.", sb, nil),
		drained:  prometheus.NewDesc("latch_backend_drained", "1 while the backend is drained through the admin API.", sb, nil),
		brkr: prometheus.NewDesc("latch_breaker_state",
			"Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.", sb, nil),
		countsAge: prometheus.NewDesc("latch_session_counts_age_seconds",
			"Age, at the scrape, of the live-session counts least_sessions works from (time since the last successful read from the session store), by service; it grows while the store is unreachable.",
			[]string{"service"}, nil),
	}
}

// Describe sends the collector's descriptions (prometheus.Collector).
func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.health, c.inFlight, c.drained, c.brkr, c.countsAge} {
		ch <- d
	}
}

// Collect sends every live backend's series (prometheus.Collector).
func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	services := c.rs.Services()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, svc := range services {
		if at := svc.SessionsCountedAt(); !at.IsZero() {
			gauge(c.countsAge, time.Since(at).Seconds(), svc.name)
		}
		set := svc.registry.Current()
		if set == nil {
			continue
		}
		for _, b := range set.Backends {
			gauge(c.up, boolGauge(b.CanTake()), svc.name, b.ID)
			state := BackendState(b)
			for _, s := range healthStates {
				gauge(c.health, boolGauge(s == state), svc.name, b.ID, s)
			}
			gauge(c.inFlight, float64(b.InFlight()), svc.name, b.ID)
			gauge(c.drained, boolGauge(b.Drained()), svc.name, b.ID)
			gauge(c.brkr, breakerGauge(b.Breaker()), svc.name, b.ID)
		}
	}
}

// BackendState is b's state as the status page and latch_backend_health
// name it: its health, or draining when drained through the admin API.
func BackendState(b *policy.Backend) string {
	if b.Drained() {
		return discovery.Draining.String()
	}
	return b.Health.String()
}

func boolGauge(on bool) float64 {
	if on {
		return 1
	}
	return 0
}

func breakerGauge(s policy.BreakerState) float64 {
	switch s {
	case policy.HalfOpen:
		return 1
	case policy.Open:
		return 2
	}
	return 0
}
