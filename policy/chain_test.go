package policy

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
)

func TestChainFallback(t *testing.T) {
	_, set := newSet(t, Options{}, backends(3))
	var falls []string
	c, err := NewChain([]string{"header_hash", "least_response_time"}, set, BuildOptions{HashHeader: "X-User"},
		func(from, to string) { falls = append(falls, from+">"+to) })
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"header_hash", "least_response_time", "round_robin"}) {
		t.Fatalf("chain %q; want round_robin appended", got)
	}
	// No X-User header and no latency data: both decline, round_robin picks.
	if _, err := c.Pick(req, Skip{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(falls, " "); got != "header_hash>least_response_time least_response_time>round_robin" {
		t.Fatalf("fallbacks %q", got)
	}
	// With a key the first picker answers: no fallback.
	falls = nil
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User", "u1")
	first, _ := c.Pick(r, Skip{})
	for range 10 {
		if b, _ := c.Pick(r, Skip{}); b != first || len(falls) != 0 {
			t.Fatalf("keyed request: %s then %s, fallbacks %q", first.ID, b.ID, falls)
		}
	}
}

func TestChainNames(t *testing.T) {
	_, set := newSet(t, Options{}, backends(1))
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"round_robin"}, []string{"round_robin"}},
		{[]string{"p2c"}, []string{"p2c", "round_robin"}},
		{[]string{"round_robin", "p2c"}, []string{"round_robin", "p2c", "round_robin"}},
	}
	for _, tt := range tests {
		c, err := NewChain(tt.names, set, BuildOptions{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Names(), tt.want) {
			t.Errorf("NewChain(%q): %q; want %q", tt.names, c.Names(), tt.want)
		}
	}
	for _, bad := range [][]string{nil, {"p2c", "fastest"}} {
		_, err := NewChain(bad, set, BuildOptions{}, nil)
		if err == nil || ValidatePolicy(bad) == nil {
			t.Errorf("chain %q accepted", bad)
		} else if len(bad) > 0 && !strings.Contains(err.Error(), `unknown policy "fastest"`) {
			t.Errorf("error %q does not name the unknown policy", err)
		}
	}
	if err := ValidatePolicy(DefaultPolicy); err != nil {
		t.Fatalf("default policy invalid: %v", err)
	}
	if err := ValidatePolicy(slices.Collect(maps.Keys(Builders))); err != nil {
		t.Fatal(err)
	}
}

// When nothing is usable the chain says so at once, without reporting
// fallbacks that could not help; tried backends are skipped.
func TestChainNoBackend(t *testing.T) {
	bs := backends(2)
	bs[1].Health = discovery.Critical
	_, set := newSet(t, Options{}, bs)
	falls := 0
	c, _ := NewChain([]string{"p2c", "least_connections"}, set, BuildOptions{}, func(string, string) { falls++ })
	var skip Skip
	b, err := c.Pick(req, skip)
	if err != nil || b.ID != "b00" {
		t.Fatalf("picked %v, %v; want b00", b, err)
	}
	skip.Add(b)
	if _, err := c.Pick(req, skip); !errors.Is(err, ErrNoBackend) || falls != 0 {
		t.Fatalf("all tried: err %v, %d fallbacks; want ErrNoBackend and none", err, falls)
	}
	_, empty := newSet(t, Options{}, nil)
	c, _ = NewChain(DefaultPolicy, empty, BuildOptions{}, nil)
	if _, err := c.Pick(req, Skip{}); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("empty set: %v; want ErrNoBackend", err)
	}
}

func TestSlowStartRamps(t *testing.T) {
	clk := newClock()
	bs := backends(2)
	r, first := newSet(t, Options{Now: clk.Now, SlowStart: 10 * time.Second}, bs[:1])
	if f := first.Backends[0].rampFactor(); f != 1 {
		t.Fatalf("backend of the first snapshot ramps (%v): a restart would throttle everyone", f)
	}
	set := r.Update(snapshot(bs)) // b01 joins
	chain, _ := NewChain([]string{"round_robin"}, set, BuildOptions{Rand: seeded(5)}, nil)
	share := func() float64 {
		n := 0
		for range 10_000 {
			if b, _ := chain.Pick(req, Skip{}); b.ID == "b01" {
				n++
			}
		}
		return float64(n) / 10_000
	}
	// A ramping backend keeps a pick with probability f (the elapsed share
	// of the window). Under round robin a refused pick hands the slot on,
	// so its share is f/(1+f) rather than f/2: 0 at f=0, about 17% at
	// f=0.2, 37.5% at f=0.6, and 50% once ramped. Tolerance ±4 points.
	if s := share(); s != 0 {
		t.Fatalf("at the start of slow start the new backend got %.1f%% of picks; want 0", s*100)
	}
	clk.Add(2 * time.Second)
	if p := set.Lookup("b01").SlowStart(); p != 0.2 {
		t.Fatalf("SlowStart 20%% into the window: %v; want 0.2", p)
	}
	if s := share(); s < 0.127 || s > 0.207 {
		t.Fatalf("20%% into slow start the new backend got %.1f%% of picks; want about 17%%", s*100)
	}
	clk.Add(4 * time.Second)
	if s := share(); s < 0.335 || s > 0.415 {
		t.Fatalf("60%% into slow start it got %.1f%%; want about 37.5%%", s*100)
	}
	clk.Add(4 * time.Second)
	if p := set.Lookup("b01").SlowStart(); p != 1 {
		t.Fatalf("SlowStart after the window: %v; want 1", p)
	}
	if s := share(); s != 0.5 {
		t.Fatalf("after slow start it got %.1f%%; want 50%%", s*100)
	}
}

// What starts a ramp: coming back from critical or draining, being
// undrained, a breaker closing again. A health change that keeps the
// backend usable does not.
func TestSlowStartTriggers(t *testing.T) {
	const window = 10 * time.Second
	tests := []struct {
		name    string
		trigger func(t *testing.T, r *Registry, bs []discovery.Backend)
		ramps   bool
	}{
		{"back from critical", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			bs[0].Health = discovery.Critical
			r.Update(snapshot(bs))
			bs[0].Health = discovery.Passing
			r.Update(snapshot(bs))
		}, true},
		{"back from draining", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			bs[0].Health = discovery.Draining
			r.Update(snapshot(bs))
			bs[0].Health = discovery.Passing
			r.Update(snapshot(bs))
		}, true},
		{"undrained", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			r.Drain("b00", true)
			r.Drain("b00", false)
		}, true},
		{"breaker closed again", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			b := r.Current().Lookup("b00")
			request(t, b, Failure)
			eventually(t, "probe allowed", b.CanTake)
			request(t, b, Success)
		}, true},
		{"passing to warning", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			bs[0].Health = discovery.Warning
			r.Update(snapshot(bs))
		}, false},
		{"address change", func(t *testing.T, r *Registry, bs []discovery.Backend) {
			bs[0].Addr = "10.1.1.1:1"
			r.Update(snapshot(bs))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			bs := backends(2)
			r, _ := newSet(t, Options{Now: clk.Now, SlowStart: window, WarningUsable: true,
				Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: 20 * time.Millisecond}}, bs)
			tt.trigger(t, r, bs)
			b := r.Current().Lookup("b00")
			if !tt.ramps {
				if f := b.rampFactor(); f != 1 {
					t.Fatalf("ramp factor %v; want 1 (no slow start)", f)
				}
				return
			}
			if f := b.rampFactor(); f != 0 {
				t.Fatalf("ramp factor right after: %v; want 0", f)
			}
			clk.Add(window / 4)
			if f := b.rampFactor(); f != 0.25 {
				t.Fatalf("ramp factor a quarter in: %v; want 0.25", f)
			}
			clk.Add(window)
			if f := b.rampFactor(); f != 1 || b.st.upSince.Load() != 0 {
				t.Fatalf("ramp factor after the window: %v; want 1 and the ramp cleared", f)
			}
		})
	}
}
