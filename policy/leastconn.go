package policy

import "net/http"

// leastConnections picks the backend with the fewest requests in flight
// per unit of weight. Ties are broken uniformly at random (reservoir
// sampling with a per-pick random stream), so an idle pool is spread
// rather than the first backend flooded.
//
// O(n): the exact minimum needs every counter, and the counters change on
// every Acquire and Finish without a lock; an index over them (a heap) would
// need one. p2c is the O(1) alternative and the default.
type leastConnections struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*leastConnections)(nil)

func newLeastConnections(set *Set, opts BuildOptions) Picker {
	return &leastConnections{set: set, rand: randFunc(opts)}
}

func (lc *leastConnections) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	x := lc.rand()
	var best *Backend
	var bestLoad, bestWeight int64
	ties := uint64(0)
	for _, b := range lc.set.Backends {
		if !usable(b, &skip) {
			continue
		}
		load, weight := b.st.inflight.Load(), b.weight()
		// Compare load/weight with bestLoad/bestWeight without division.
		switch l, r := load*bestWeight, bestLoad*weight; {
		case best == nil || l < r:
			best, bestLoad, bestWeight, ties = b, load, weight, 1
		case l == r:
			ties++
			if oneIn(&x, ties) {
				best, bestLoad, bestWeight = b, load, weight
			}
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	return best, nil
}
