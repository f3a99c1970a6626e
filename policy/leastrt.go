package policy

import "net/http"

// leastResponseTime prefers the backend with the lowest expected wait: its
// latency EWMA times its in-flight requests plus one, per unit of weight.
// It draws at random in proportion to the inverse of that wait rather
// than always taking the minimum: backends as fast as each other share the
// traffic (a strict minimum sends every new session to whichever one
// measured a few microseconds faster, and keeps them there, since the
// others get no samples to catch up), a backend twice as slow gets half
// the share of the fastest, one a hundred times slower a hundredth.
// (Envoy's least-request balancer, when weights differ, likewise shares in
// proportion to weight over load instead of taking a minimum.)
//
// A backend with no data yet (new, or not sampled for three decay
// constants) is given a trial request whenever it has nothing in flight:
// tried, neither starved nor flooded. When no usable backend has data the
// picker declines, and the next picker of the chain chooses (its traffic
// provides the first samples).
//
// O(n), for the reason given on leastConnections.
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
	if len(bs) == 0 {
		return nil, ErrNoBackend
	}
	now := p.set.reg.now()
	x := p.rand()
	var best, trial *Backend
	var total float64 // sum of the draw weights so far
	trials := uint64(0)
	anyUsable := false
	for _, b := range bs {
		if !usable(b, &skip) {
			continue
		}
		anyUsable = true
		lat := b.latency(now)
		inflight := b.st.inflight.Load()
		if lat == 0 {
			if inflight == 0 {
				if trials++; trials == 1 {
					trial = b
				} else if oneIn(&x, trials) {
					trial = b
				}
			}
			continue
		}
		// One pass, weighted reservoir of one: b replaces the pick so far
		// with probability w / (sum of weights up to b).
		wait := lat * float64(inflight+1) / float64(b.weight())
		w := 1 / wait
		total += w
		if best == nil || unit(splitmix(&x))*total < w {
			best = b
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
