package policy

import (
	"net/http"
)

// leastConnections picks the backend with the fewest requests in flight
// relative to its weight. The scan starts at a random index, so ties go to
// a random one of the least loaded rather than always the first. O(n).
type leastConnections struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*leastConnections)(nil)

func newLeastConnections(set *Set, opts BuildOptions) Picker {
	return &leastConnections{set: set, rand: randFunc(opts)}
}

func (lc *leastConnections) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	bs := lc.set.Backends
	n := len(bs)
	if n == 0 {
		return nil, ErrNoBackend
	}
	now := bs[0].st.reg.now()
	start := int(lc.rand() % uint64(n))
	var best *Backend
	var bestLoad, bestWeight int64
	for i := range n {
		b := bs[(start+i)%n]
		if !usable(b, skip, now) {
			continue
		}
		load, weight := b.st.inflight.Load(), int64(max(b.Weight, 1))
		// load/weight < bestLoad/bestWeight, without division.
		if best == nil || load*bestWeight < bestLoad*weight {
			best, bestLoad, bestWeight = b, load, weight
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	return best, nil
}

// leastResponseTime picks the backend with the lowest EWMA latency times
// its in-flight load (+1). A backend with no data yet (new, or not sampled
// for three decay constants) gets a trial request when it has nothing in
// flight: tried, neither starved nor flooded. When no backend has data the
// picker declines, and the next picker of the chain chooses (its traffic
// provides the first samples). O(n).
type leastResponseTime struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*leastResponseTime)(nil)

func newLeastResponseTime(set *Set, opts BuildOptions) Picker {
	return &leastResponseTime{set: set, rand: randFunc(opts)}
}

func (p *leastResponseTime) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	bs := p.set.Backends
	n := len(bs)
	if n == 0 {
		return nil, ErrNoBackend
	}
	now := bs[0].st.reg.now()
	start := int(p.rand() % uint64(n))
	var best, trial *Backend
	bestScore := 0.0
	anyUsable := false
	for i := range n {
		b := bs[(start+i)%n]
		if !usable(b, skip, now) {
			continue
		}
		anyUsable = true
		lat := b.latency(now)
		inflight := b.st.inflight.Load()
		if lat == 0 {
			if inflight == 0 && trial == nil {
				trial = b
			}
			continue
		}
		score := lat * float64(inflight+1) / float64(max(b.Weight, 1))
		if best == nil || score < bestScore {
			best, bestScore = b, score
		}
	}
	switch {
	case trial != nil && best != nil:
		return trial, nil
	case best != nil:
		return best, nil
	case anyUsable:
		return nil, ErrDecline // no data anywhere yet
	}
	return nil, ErrNoBackend
}
