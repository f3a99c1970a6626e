package policy

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
)

// CanKeep and CanTake by health, Warning policy and drain.
func TestUsability(t *testing.T) {
	tests := []struct {
		name        string
		health      discovery.Health
		warnOK      bool
		drained     bool
		keep, taken bool
	}{
		{"passing", discovery.Passing, true, false, true, true},
		{"warning usable", discovery.Warning, true, false, true, true},
		{"warning not usable", discovery.Warning, false, false, false, false},
		{"draining", discovery.Draining, true, false, true, false},
		{"critical", discovery.Critical, true, false, false, false},
		{"drained passing", discovery.Passing, true, true, true, false},
		{"drained draining", discovery.Draining, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := backends(2) // b01 stays passing, so no panic mode
			bs[0].Health = tt.health
			r, set := newSet(t, Options{WarningUsable: tt.warnOK}, bs)
			r.Drain("b00", tt.drained)
			b := set.Lookup("b00")
			if b.CanKeep() != tt.keep || b.CanTake() != tt.taken || b.Drained() != tt.drained {
				t.Fatalf("CanKeep %v CanTake %v Drained %v; want %v %v %v",
					b.CanKeep(), b.CanTake(), b.Drained(), tt.keep, tt.taken, tt.drained)
			}
			warm(t, set)
			for name, build := range Builders {
				p := build(set, keyedOpts)
				for range 20 {
					got, err := p.Pick(keyed(), Skip{})
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if got == b && !tt.taken {
						t.Fatalf("%s picked b00, which may not take new sessions", name)
					}
				}
			}
		})
	}
}

func TestDrain(t *testing.T) {
	r, _ := newSet(t, Options{}, backends(2))
	if r.Drain("nope", true) {
		t.Fatal("Drain of an unknown id reported success")
	}
	if !r.Drain("b00", true) {
		t.Fatal("Drain of a known id failed")
	}
	// Drains survive a new snapshot, not the backend leaving.
	set := r.Update(snapshot(backends(2)))
	if b := set.Lookup("b00"); b.CanTake() || !b.CanKeep() || !b.Drained() {
		t.Fatal("drain lost on Update")
	}
	r.Update(snapshot(backends(2)[1:]))
	set = r.Update(snapshot(backends(2)))
	if set.Lookup("b00").Drained() {
		t.Fatal("drain kept for a backend that left and came back")
	}
}

// Skip excludes tried backends in every picker, across Sets of the same
// registry too.
func TestSkip(t *testing.T) {
	r, set := newSet(t, Options{}, backends(3))
	var skip Skip
	skip.Add(set.Lookup("b00"))
	skip.Add(set.Lookup("b02"))
	skip.Add(set.Lookup("b02"))
	skip.Add(nil)
	if skip.Len() != 2 || !skip.Has(set.Lookup("b02")) || skip.Has(set.Lookup("b01")) {
		t.Fatalf("Skip: len %d", skip.Len())
	}
	next := r.Update(snapshot(backends(3)))
	if !skip.Has(next.Lookup("b00")) {
		t.Fatal("Skip forgot b00 in a newer Set")
	}
	warm(t, next)
	for name, build := range Builders {
		p := build(next, keyedOpts)
		for range 20 {
			if b, err := p.Pick(keyed(), skip); err != nil || b.ID != "b01" {
				t.Fatalf("%s with b00 and b02 tried: %v, %v; want b01", name, b, err)
			}
		}
		skip := skip
		skip.Add(next.Lookup("b01"))
		if _, err := p.Pick(keyed(), skip); err != ErrNoBackend {
			t.Fatalf("%s with all tried: %v; want ErrNoBackend", name, err)
		}
	}
	var full Skip
	for i := range MaxSkip + 5 {
		_, s := newSet(t, Options{}, backends(1))
		full.Add(s.Backends[0])
		if full.Len() != min(i+1, MaxSkip) {
			t.Fatalf("Skip len %d after %d adds", full.Len(), i+1)
		}
	}
}

func TestPanicMode(t *testing.T) {
	bs := backends(4)
	bs[0].Health, bs[1].Health, bs[2].Health = discovery.Critical, discovery.Critical, discovery.Draining
	_, set := newSet(t, Options{PanicThreshold: 0.5}, bs)
	if !set.Panic || !set.Lookup("b00").CanKeep() || !set.Lookup("b00").CanTake() {
		t.Fatal("1 of 4 healthy: want panic mode with critical backends usable")
	}
	if b := set.Lookup("b02"); !b.CanKeep() || b.CanTake() {
		t.Fatal("panic mode: a draining backend must still get no new sessions")
	}
	bs[2].Health = discovery.Passing
	_, set = newSet(t, Options{PanicThreshold: 0.5}, bs)
	if set.Panic || set.Lookup("b01").CanKeep() {
		t.Fatal("2 of 4 healthy: want health trusted")
	}
	_, set = newSet(t, Options{}, backends(2)[:1:1])
	if set.Panic {
		t.Fatal("panic mode without a threshold")
	}
}

// Update sorts by ID and drops duplicate IDs; Current and Lookup follow.
func TestUpdateSortsAndDedupes(t *testing.T) {
	bs := backends(3)
	in := []discovery.Backend{bs[2], bs[0], bs[1], bs[0]}
	in[3].Addr = "10.9.9.9:1"
	r := NewRegistry("web", Options{})
	if r.Current() != nil {
		t.Fatal("Current before any Update")
	}
	set := r.Update(discovery.Snapshot{Service: "web", Backends: in, Stale: true})
	var ids []string
	for _, b := range set.Backends {
		ids = append(ids, b.ID)
	}
	if !slices.Equal(ids, []string{"b00", "b01", "b02"}) {
		t.Fatalf("IDs %q; want sorted and unique", ids)
	}
	if set.Lookup("b00").Addr != bs[0].Addr || set.Lookup("zz") != nil || !set.Stale || r.Current() != set {
		t.Fatal("Lookup, Stale or Current wrong")
	}
	if in[0].ID != "b02" {
		t.Fatal("Update reordered the caller's snapshot")
	}
}

// The EWMA decays by time: a sample Δt after the previous one weighs
// 1 - e^(-Δt/τ).
func TestLatencyEWMA(t *testing.T) {
	clk := newClock()
	_, set := newSet(t, Options{Now: clk.Now, LatencyDecay: time.Second}, backends(1))
	b := set.Backends[0]
	sample := func(d time.Duration, o Outcome) {
		tk, _ := b.Acquire()
		clk.Add(d)
		tk.Finish(o, 0)
	}
	sample(100*time.Millisecond, Success)
	if b.Latency() != 100*time.Millisecond {
		t.Fatalf("first sample: %v; want 100ms", b.Latency())
	}
	clk.Add(800 * time.Millisecond)
	sample(200*time.Millisecond, Failure) // Δt = 1s = τ: weight 1 - 1/e
	want := 100 + (1-math.Exp(-1))*100
	if got := float64(b.Latency()) / float64(time.Millisecond); math.Abs(got-want) > 0.01 {
		t.Fatalf("after a second sample τ later: %.3fms; want %.3fms", got, want)
	}
	before := b.Latency()
	sample(time.Hour, Ignored)
	if b.Latency() != before {
		t.Fatal("an ignored request fed the EWMA")
	}
	var zero Ticket
	zero.Finish(Success, 0) // no-op
	if b.InFlight() != 0 {
		t.Fatalf("in flight %d", b.InFlight())
	}
}
