package affinity

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// activeChecks is latch's own health check of one service's backends,
// complementing Consul's: a backend failing UnhealthyThreshold probes in a
// row is treated as critical until it passes HealthyThreshold in a row.
type activeChecks struct {
	service string
	cfg     checkSettings
	client  *http.Client
	log     *slog.Logger
	scheme  string // http, or https for backend_tls

	mu      sync.Mutex
	targets []discovery.Backend // from the last snapshot
	state   map[string]*probeState
}

// checkSettings are a route's health_check settings, resolved.
type checkSettings struct {
	grpc                 bool   // kind grpc: grpc.health.v1 (grpchealth.go)
	grpcService          string // kind grpc: the service asked about
	path                 string
	interval, timeout    time.Duration
	healthyN, unhealthyN int
}

type probeState struct {
	down      bool
	successes int
	failures  int
}

func newActiveChecks(service string, hc config.HealthCheck, rt http.RoundTripper, log *slog.Logger) *activeChecks {
	cfg := checkSettings{grpc: hc.Kind.Get() == config.CheckGRPC, grpcService: hc.GRPCService.Get(), path: hc.Path.Get(), interval: hc.Interval.Get(), timeout: hc.Timeout.Get(),
		healthyN: hc.HealthyThreshold.Get(), unhealthyN: hc.UnhealthyThreshold.Get()}
	return &activeChecks{
		service: service, cfg: cfg, log: log,
		client: &http.Client{Transport: rt, Timeout: cfg.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		state: map[string]*probeState{}, scheme: "http",
	}
}

// apply returns s with the backends that fail latch's checks marked
// critical, and remembers s's backends as the targets of the next round.
func (a *activeChecks) apply(s discovery.Snapshot) discovery.Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.targets = s.Backends
	out := s
	out.Backends = slices.Clone(s.Backends)
	for i := range out.Backends {
		if st := a.state[out.Backends[i].ID]; st != nil && st.down {
			out.Backends[i].Health = discovery.Critical
		}
	}
	return out
}

// run probes every interval until ctx ends; changed is called when a
// backend's verdict flips.
func (a *activeChecks) run(ctx context.Context, changed func()) {
	t := time.NewTicker(a.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.round(ctx) {
			changed()
		}
	}
}

// round probes all targets concurrently and reports whether a verdict changed.
func (a *activeChecks) round(ctx context.Context) bool {
	a.mu.Lock()
	targets := a.targets
	a.mu.Unlock()
	results := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, b := range targets {
		wg.Go(func() { results[i] = a.probe(ctx, b.Addr) })
	}
	wg.Wait()

	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	live := make(map[string]*probeState, len(targets))
	for i, b := range targets {
		st := a.state[b.ID]
		if st == nil {
			st = &probeState{}
		}
		live[b.ID] = st
		if results[i] {
			st.successes, st.failures = st.successes+1, 0
			if st.down && st.successes >= a.cfg.healthyN {
				st.down, changed = false, true
				a.log.Info("active health check passing", "service", a.service, "backend", b.ID)
			}
		} else {
			st.failures, st.successes = st.failures+1, 0
			if !st.down && st.failures >= a.cfg.unhealthyN {
				st.down, changed = true, true
				a.log.Warn("active health check failing", "service", a.service, "backend", b.ID)
			}
		}
	}
	a.state = live // forget backends that left
	return changed
}

func (a *activeChecks) probe(ctx context.Context, addr string) bool {
	if a.cfg.grpc {
		return a.probeGRPC(ctx, addr)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.scheme+"://"+addr+a.cfg.path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "latch-health-check")
	resp, err := a.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
