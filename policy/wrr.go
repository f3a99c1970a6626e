package policy

import (
	"net/http"
	"sync/atomic"
)

// maxSchedule bounds the precomputed weighted schedule; larger weight sums
// are scaled down proportionally (every backend keeps at least 1).
const maxSchedule = 1 << 16

// maxSkipAhead bounds how far a pick walks the schedule past unusable
// backends before scanning the backends themselves.
const maxSkipAhead = 64

// weightedRoundRobin is nginx's smooth weighted round robin with the whole
// interleaved sequence precomputed in the builder: a pick is one atomic add
// and an index, O(1). Weights {5,1,1} give a a b a c a a, not a burst of
// five a. Unusable backends are passed over.
type weightedRoundRobin struct {
	set      *Set
	schedule []uint32 // indices into set.Backends
	next     atomic.Uint64
}

var _ Picker = (*weightedRoundRobin)(nil)

func newWeightedRoundRobin(set *Set, opts BuildOptions) Picker {
	w := &weightedRoundRobin{set: set, schedule: smoothSchedule(set.Backends)}
	if len(w.schedule) > 0 {
		w.next.Store(randFunc(opts)() % uint64(len(w.schedule)))
	}
	return w
}

// smoothSchedule is one full cycle of smooth WRR: at each step every
// backend gains its weight, and the one with the most (the first on ties)
// is chosen and loses the total. O(total weight × n), on the state path.
func smoothSchedule(bs []*Backend) []uint32 {
	weights := make([]int64, len(bs))
	var total int64
	for i, b := range bs {
		weights[i] = b.weight()
		total += weights[i]
	}
	if total > maxSchedule {
		scale := float64(maxSchedule) / float64(total)
		total = 0
		for i := range weights {
			weights[i] = max(int64(float64(weights[i])*scale), 1)
			total += weights[i]
		}
	}
	current := make([]int64, len(weights))
	schedule := make([]uint32, 0, total)
	for range total {
		best := 0
		for i := range weights {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, uint32(best))
	}
	return schedule
}

func (w *weightedRoundRobin) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	n := uint64(len(w.schedule))
	if n == 0 {
		return nil, ErrNoBackend
	}
	bs := w.set.Backends
	start := w.next.Add(1) - 1
	for i := range min(n, maxSkipAhead) {
		if b := bs[w.schedule[(start+i)%n]]; usable(b, &skip) {
			if i > 0 {
				w.next.Add(i)
			}
			return b, nil
		}
	}
	// A long run of unusable entries (most weight is down): any usable
	// backend, scanning from the scheduled one. O(n), rare.
	first := int(w.schedule[start%n])
	for i := range bs {
		if b := bs[(first+i)%len(bs)]; usable(b, &skip) {
			return b, nil
		}
	}
	return nil, ErrNoBackend
}
