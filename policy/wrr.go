package policy

import (
	"net/http"
	"sync/atomic"
)

// maxSchedule bounds the precomputed weighted schedule; larger weight sums
// are scaled down proportionally.
const maxSchedule = 1 << 16

// weightedRoundRobin is nginx's smooth weighted round robin, with the
// whole interleaved sequence precomputed in the builder: a pick is one
// atomic add and an index. Weights {5,1,1} give a a b a c a a.
type weightedRoundRobin struct {
	set      *Set
	schedule []uint32 // backend indices
	next     atomic.Uint64
}

var _ Picker = (*weightedRoundRobin)(nil)

func newWeightedRoundRobin(set *Set, opts BuildOptions) Picker {
	w := &weightedRoundRobin{set: set}
	weights := make([]int, len(set.Backends))
	total := 0
	for i, b := range set.Backends {
		weights[i] = max(b.Weight, 1)
		total += weights[i]
	}
	if total > maxSchedule {
		scale := float64(maxSchedule) / float64(total)
		total = 0
		for i := range weights {
			weights[i] = max(int(float64(weights[i])*scale), 1)
			total += weights[i]
		}
	}
	// Smooth WRR: each step every backend gains its weight; the one with
	// the most current weight is chosen and loses the total.
	current := make([]int, len(weights))
	w.schedule = make([]uint32, 0, total)
	for range total {
		best := 0
		for i := range weights {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		w.schedule = append(w.schedule, uint32(best))
	}
	if len(w.schedule) > 0 {
		w.next.Store(randFunc(opts)() % uint64(len(w.schedule)))
	}
	return w
}

func (w *weightedRoundRobin) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	n := uint64(len(w.schedule))
	if n == 0 {
		return nil, ErrNoBackend
	}
	bs := w.set.Backends
	now := bs[0].st.reg.now()
	// Unusable backends are passed over; bounded by the schedule length.
	for range n {
		b := bs[w.schedule[(w.next.Add(1)-1)%n]]
		if usable(b, skip, now) {
			return b, nil
		}
	}
	return nil, ErrNoBackend
}
