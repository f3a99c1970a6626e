package statuspage

import (
	"context"
	"sync"
	"time"
)

// Counters reads cumulative counters (they only grow, except when a
// series restarts from zero), keyed by names the caller chooses. It is
// called from the Sampler's goroutine only.
type Counters func() map[string]float64

// Sampler keeps a ring of counter readings taken every Every over Window,
// from which it answers rates and per-step series. Run owns the sampling;
// Rate and Series are safe for concurrent use.
type Sampler struct {
	read   Counters
	every  time.Duration
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	ring []reading // oldest first once full; len ≤ cap
	next int       // where the next reading goes once the ring is full
}

type reading struct {
	at time.Time
	v  map[string]float64
}

// NewSampler samples read every every (2s if ≤ 0), keeping window (5m if
// ≤ 0) of readings.
func NewSampler(read Counters, every, window time.Duration) *Sampler {
	if every <= 0 {
		every = 2 * time.Second
	}
	if window <= 0 {
		window = 5 * time.Minute
	}
	n := int(window/every) + 1
	return &Sampler{read: read, every: every, window: window, now: time.Now, ring: make([]reading, 0, n)}
}

// Step is the spacing of the readings.
func (s *Sampler) Step() time.Duration { return s.every }

// Window is the span of readings kept.
func (s *Sampler) Window() time.Duration { return s.window }

// Run samples at once and then every step until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.Sample()
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// Sample takes one reading now.
func (s *Sampler) Sample() {
	r := reading{at: s.now(), v: s.read()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, r)
		return
	}
	s.ring[s.next] = r
	s.next = (s.next + 1) % len(s.ring)
}

// ordered returns the readings oldest first. Called with mu held.
func (s *Sampler) ordered() []reading {
	if len(s.ring) < cap(s.ring) || s.next == 0 {
		return s.ring
	}
	return append(append([]reading(nil), s.ring[s.next:]...), s.ring[:s.next]...)
}

// Rate is key's increase per second over the last over (or as much of it
// as has been sampled); 0 with fewer than two readings.
func (s *Sampler) Rate(key string, over time.Duration) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.ordered()
	if len(rs) < 2 {
		return 0
	}
	last := rs[len(rs)-1]
	first := 0
	for first < len(rs)-2 && last.at.Sub(rs[first].at) > over {
		first++
	}
	sum := 0.0
	for i := first + 1; i < len(rs); i++ {
		sum += increase(rs[i-1].v[key], rs[i].v[key])
	}
	secs := last.at.Sub(rs[first].at).Seconds()
	if secs <= 0 {
		return 0
	}
	return sum / secs
}

// Latest is key's value in the last reading (0 before the first).
func (s *Sampler) Latest(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.ordered()
	if len(rs) == 0 {
		return 0
	}
	return rs[len(rs)-1].v[key]
}

// Series is key's rate per second over each step, oldest first: one value
// fewer than the readings kept.
func (s *Sampler) Series(key string) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.ordered()
	out := make([]float64, 0, max(len(rs)-1, 0))
	for i := 1; i < len(rs); i++ {
		rate := 0.0
		if secs := rs[i].at.Sub(rs[i-1].at).Seconds(); secs > 0 {
			rate = increase(rs[i-1].v[key], rs[i].v[key]) / secs
		}
		out = append(out, rate)
	}
	return out
}

// increase between two readings of a counter; a counter that went down
// was reset (its series was deleted and came back): it grew by its new
// value.
func increase(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}
