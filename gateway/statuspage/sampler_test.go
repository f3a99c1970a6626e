package statuspage

import (
	"context"
	"testing"
	"time"
)

// fakeCounters is a counter the test moves, with a clock the test moves.
type fakeCounters struct {
	now time.Time
	v   map[string]float64
}

func newTestSampler(every, window time.Duration) (*Sampler, *fakeCounters) {
	f := &fakeCounters{now: time.Unix(1_700_000_000, 0), v: map[string]float64{}}
	s := NewSampler(func() map[string]float64 {
		out := make(map[string]float64, len(f.v))
		for k, v := range f.v {
			out[k] = v
		}
		return out
	}, every, window)
	s.now = func() time.Time { return f.now }
	return s, f
}

func TestSamplerRateAndSeries(t *testing.T) {
	s, f := newTestSampler(2*time.Second, 10*time.Second) // 6 readings kept
	if r := s.Rate("a", time.Minute); r != 0 {
		t.Fatalf("rate with no readings: %v", r)
	}
	// 10 per step (5/s), then 20 per step (10/s), over 8 steps.
	for i := range 9 {
		if i > 0 {
			f.now = f.now.Add(2 * time.Second)
			if i <= 4 {
				f.v["a"] += 10
			} else {
				f.v["a"] += 20
			}
		}
		s.Sample()
	}
	got := s.Series("a")
	want := []float64{5, 10, 10, 10, 10} // the ring keeps 6 readings: 5 steps
	if len(got) != len(want) {
		t.Fatalf("series %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("series %v; want %v", got, want)
		}
	}
	if r := s.Rate("a", 4*time.Second); r != 10 {
		t.Fatalf("rate over the last 4s: %v; want 10", r)
	}
	if r := s.Rate("a", time.Minute); r != 9 { // (10+20*4)/10s
		t.Fatalf("rate over everything kept: %v; want 9", r)
	}
	if r := s.Rate("missing", time.Minute); r != 0 {
		t.Fatalf("rate of an unknown key: %v", r)
	}
}

// A counter that restarts from zero (its series was deleted and came
// back) counts its new value, never a negative rate.
func TestSamplerCounterReset(t *testing.T) {
	s, f := newTestSampler(time.Second, time.Minute)
	f.v["a"] = 100
	s.Sample()
	f.now = f.now.Add(time.Second)
	f.v["a"] = 3
	s.Sample()
	if r := s.Rate("a", time.Minute); r != 3 {
		t.Fatalf("rate across a reset: %v; want 3", r)
	}
}

func TestSamplerRunStops(t *testing.T) {
	s, _ := newTestSampler(time.Millisecond, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Series("a")) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run took no readings")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
