package policy

import "net/http"

// leastResponseTime picks the backend with the lowest expected wait: its
// latency EWMA times its in-flight requests plus one, per unit of weight.
// Ties are broken uniformly at random.
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
	var bestScore float64
	ties, trials := uint64(0), uint64(0)
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
		score := lat * float64(inflight+1) / float64(b.weight())
		switch {
		case best == nil || score < bestScore:
			best, bestScore, ties = b, score, 1
		case score == bestScore:
			ties++
			if oneIn(&x, ties) {
				best = b
			}
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
