package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func entry(checks ...*api.HealthCheck) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &api.AgentService{ID: "web-1", Service: "web", Port: 8080, Tags: []string{"a"}, Weights: api.AgentWeights{Passing: 3, Warning: 1}},
		Checks:  checks,
	}
}

func check(id, serviceID, status string) *api.HealthCheck {
	return &api.HealthCheck{CheckID: id, ServiceID: serviceID, Status: status}
}

func TestFromEntry(t *testing.T) {
	ran := func(c *api.HealthCheck) *api.HealthCheck {
		c.Output = "HTTP GET http://10.0.0.1:8080/health: 500"
		return c
	}
	tests := []struct {
		name      string
		checks    []*api.HealthCheck
		health    Health
		weight    int
		unchecked bool
	}{
		{"no checks", nil, Passing, 3, false},
		{"all passing", []*api.HealthCheck{check("serfHealth", "", api.HealthPassing), check("http", "web-1", api.HealthPassing)}, Passing, 3, false},
		{"warning", []*api.HealthCheck{check("http", "web-1", api.HealthWarning)}, Warning, 1, false},
		{"critical service check", []*api.HealthCheck{ran(check("http", "web-1", api.HealthCritical))}, Critical, 3, false},
		{"critical node check", []*api.HealthCheck{ran(check("serfHealth", "", api.HealthCritical))}, Critical, 3, false},
		{"other service's check ignored", []*api.HealthCheck{check("http", "api-1", api.HealthCritical)}, Passing, 3, false},
		{"service maintenance", []*api.HealthCheck{check(api.ServiceMaintPrefix+"web-1", "web-1", api.HealthCritical)}, Draining, 3, false},
		{"node maintenance", []*api.HealthCheck{check(api.NodeMaint, "", api.HealthCritical)}, Draining, 3, false},
		{"maintenance and really critical", []*api.HealthCheck{check(api.NodeMaint, "", api.HealthCritical), ran(check("http", "web-1", api.HealthCritical))}, Critical, 3, false},
		// Issue 29: a check Consul has not run yet reads critical, with no
		// output: health not known yet (no panic mode at start).
		{"check not run yet", []*api.HealthCheck{check("serfHealth", "", api.HealthPassing), check("http", "web-1", api.HealthCritical)}, Critical, 3, true},
		{"check failed", []*api.HealthCheck{ran(check("http", "web-1", api.HealthCritical))}, Critical, 3, false},
		{"one not run, one failed", []*api.HealthCheck{check("tcp", "web-1", api.HealthCritical), ran(check("http", "web-1", api.HealthCritical))}, Critical, 3, false},
		{"not run, in maintenance", []*api.HealthCheck{check(api.ServiceMaintPrefix+"web-1", "web-1", api.HealthCritical), check("http", "web-1", api.HealthCritical)}, Critical, 3, true},
		{"other service's check not run", []*api.HealthCheck{check("http", "api-1", api.HealthCritical)}, Passing, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := FromEntry(entry(tt.checks...))
			if b.Health != tt.health || b.Weight != tt.weight || b.Unchecked != tt.unchecked {
				t.Fatalf("health %v weight %d unchecked %v; want %v %d %v", b.Health, b.Weight, b.Unchecked, tt.health, tt.weight, tt.unchecked)
			}
			if b.ID != "web-1" || b.Addr != "10.0.0.1:8080" || b.Service != "web" {
				t.Fatalf("identity %+v; want web-1 at the node address", b)
			}
		})
	}
	e := entry()
	e.Service.Address = "::1"
	e.Service.Weights = api.AgentWeights{}
	if b := FromEntry(e); b.Addr != "[::1]:8080" || b.Weight != 1 {
		t.Fatalf("IPv6 service address / zero weight: %s %d", b.Addr, b.Weight)
	}
}

func TestSnapshotEqualIgnoresIndex(t *testing.T) {
	a := Snapshot{Service: "web", Index: 1, Backends: []Backend{{ID: "x", Meta: map[string]string{"k": "v"}}}}
	b := Snapshot{Service: "web", Index: 2, Backends: []Backend{{ID: "x", Meta: map[string]string{"k": "v"}}}}
	if !a.Equal(b) {
		t.Fatal("snapshots differing only by index are not equal")
	}
	b.Backends[0].Meta["k"] = "w"
	if a.Equal(b) {
		t.Fatal("different meta compared equal")
	}
	b = a
	b.Stale = true
	if a.Equal(b) {
		t.Fatal("staleness ignored")
	}
}

func TestBackoffBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		bo := backoff{min: 100 * time.Millisecond, max: time.Second, rand: func() float64 { return r }}
		prev := time.Duration(0)
		for n := range 20 {
			d := bo.delay(n)
			if d < bo.min || d > bo.max {
				t.Fatalf("delay(%d) = %v outside [%v, %v]", n, d, bo.min, bo.max)
			}
			if r > 0 && n < 4 && d < prev {
				t.Fatalf("delay(%d) = %v shrank from %v before reaching the cap", n, d, prev)
			}
			prev = d
		}
	}
	bo := backoff{min: 100 * time.Millisecond, max: time.Second, rand: func() float64 { return 0.999 }}
	if d := bo.delay(30); d < 990*time.Millisecond {
		t.Fatalf("capped delay %v; want about the max", d)
	}
}

func TestStaticSource(t *testing.T) {
	bs, err := ParseStatic("web", []string{"127.0.0.1:2", "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseStatic("web", []string{"nope"}); err == nil {
		t.Fatal("bad address accepted")
	}
	s := NewStatic(map[string][]Backend{"web": bs})
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []Snapshot
	done := make(chan error)
	go func() {
		done <- s.Watch(ctx, "web", func(sn Snapshot) { mu.Lock(); got = append(got, sn); mu.Unlock() })
	}()
	wait := func(n int) Snapshot {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			if len(got) >= n {
				sn := got[n-1]
				mu.Unlock()
				return sn
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("snapshot %d never came", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if first := wait(1); len(first.Backends) != 2 || first.Backends[0].ID != "127.0.0.1:1" {
		t.Fatalf("first snapshot %+v; want 2 backends sorted by ID", first)
	}
	s.Set("web", bs[:1])
	if second := wait(2); len(second.Backends) != 1 {
		t.Fatalf("second snapshot %+v; want 1 backend", second)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Watch returned %v; want context.Canceled", err)
	}
}

// A failing agent, or one answering at once with no progress, never causes
// a hot loop: the number of queries in a window is bounded by the backoff.
func TestBlockingLoopNeverSpins(t *testing.T) {
	for name, fetch := range map[string]func(context.Context, uint64) (uint64, error){
		"errors":     func(context.Context, uint64) (uint64, error) { return 0, context.DeadlineExceeded },
		"same index": func(context.Context, uint64) (uint64, error) { return 7, nil },
		"index zero": func(context.Context, uint64) (uint64, error) { return 0, nil },
		"goes backwards": func() func(context.Context, uint64) (uint64, error) {
			i := uint64(100)
			return func(context.Context, uint64) (uint64, error) { i--; return i, nil }
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			var calls, errs int
			var mu sync.Mutex
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			opts := ConsulOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
			opts.defaults()
			_ = blockingLoop(ctx, opts, "test", func(ctx context.Context, idx uint64) (uint64, error) {
				mu.Lock()
				calls++
				mu.Unlock()
				return fetch(ctx, idx)
			}, func() { errs++ })
			// 300ms with at least 20ms between queries: at most ~16.
			if calls > 20 {
				t.Fatalf("%d queries in 300ms: a hot loop", calls)
			}
			if calls < 2 {
				t.Fatalf("%d queries in 300ms: the loop stopped retrying", calls)
			}
		})
	}
}
