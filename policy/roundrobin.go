package policy

import (
	"net/http"
	"sync/atomic"
)

// roundRobin cycles over the backends with one atomic add per pick, fair
// under concurrency. It starts at a random index so a rebuild does not send
// the next request of every replica to the first backend. Unusable
// backends are passed over. O(1) while backends are usable.
type roundRobin struct {
	set  *Set
	next atomic.Uint64
}

var _ Picker = (*roundRobin)(nil)

func newRoundRobin(set *Set, opts BuildOptions) Picker {
	rr := &roundRobin{set: set}
	if n := len(set.Backends); n > 0 {
		rr.next.Store(randFunc(opts)() % uint64(n))
	}
	return rr
}

func (rr *roundRobin) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	bs := rr.set.Backends
	n := uint64(len(bs))
	if n == 0 {
		return nil, ErrNoBackend
	}
	start := rr.next.Add(1) - 1
	for i := range n {
		if b := bs[(start+i)%n]; usable(b, &skip) {
			if i > 0 {
				rr.next.Add(i) // keep the cycle moving past the ones passed over
			}
			return b, nil
		}
	}
	return nil, ErrNoBackend
}
