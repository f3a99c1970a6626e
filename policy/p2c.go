package policy

import (
	"math/bits"
	"net/http"
)

// p2c is the power of two random choices: two distinct random backends,
// the one with fewer requests in flight per unit of weight wins (the first
// drawn on a tie). O(1) with equal weights, O(log n) otherwise, and unlike
// least connections it does not send every replica's next request to the
// same idle backend when their views of load lag. The default policy.
//
// The two candidates are drawn in proportion to weight (the first among
// all backends, the second among the others), so an idle pool, where every
// comparison is a tie, shares new sessions in proportion to weight too: a
// backend of weight 4 among three of weight 1 takes 4/7 (issue 11: drawn
// uniformly, it took a quarter). With some backends unusable the shares
// stay proportional among the rest: a draw that meets an unusable backend
// takes its partner, drawn in proportion to weight among the others.
type p2c struct {
	set  *Set
	rand func() uint64
	// load is what the two candidates are compared on, per unit of weight:
	// requests in flight for p2c, live sessions for least_sessions.
	load func(*state) int64
	// cum[i] is the sum of the weights of backends 0..i, for weighted
	// draws; nil when every weight is the same (uniform draws).
	cum []uint64
}

var _ Picker = (*p2c)(nil)

func newP2C(set *Set, opts BuildOptions) Picker {
	return newPair(set, opts, inflight)
}

// inflight is p2c's load: requests in flight.
func inflight(st *state) int64 { return st.inflight.Load() }

// newPair builds a power-of-two-choices picker comparing load.
func newPair(set *Set, opts BuildOptions, load func(*state) int64) *p2c {
	p := &p2c{set: set, rand: randFunc(opts), load: load}
	bs := set.Backends
	cum := make([]uint64, len(bs))
	var total uint64
	for i, b := range bs {
		total += uint64(b.weight())
		cum[i] = total
		if b.weight() != bs[0].weight() {
			p.cum = cum
		}
	}
	return p
}

func (p *p2c) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	bs := p.set.Backends
	n := uint64(len(bs))
	switch n {
	case 0:
		return nil, ErrNoBackend
	case 1:
		if usable(bs[0], &skip) {
			return bs[0], nil
		}
		return nil, ErrNoBackend
	}
	s := p.rand() // seeds the stream of further draws
	x := s
	for range randomTries {
		i, j := p.pair(x, n, &s)
		a, b := bs[i], bs[j]
		au, bu := usable(a, &skip), usable(b, &skip)
		switch {
		case au && bu:
			if p.load(b.st)*a.weight() < p.load(a.st)*b.weight() {
				return b, nil
			}
			return a, nil
		case au:
			return a, nil
		case bu:
			return b, nil
		}
		x = splitmix(&s)
	}
	return sampleUsable(bs, &skip, s, p.cum != nil) // most backends unusable
}

// pair draws two distinct indices below n from x (and, for weighted draws,
// the next number of the stream s): uniform over pairs when the weights
// are equal; otherwise i with probability w_i/W and j with probability
// w_j/(W-w_i).
func (p *p2c) pair(x, n uint64, s *uint64) (i, j uint64) {
	if p.cum == nil {
		i = x % n
		j = (x >> 32) % (n - 1)
		if j >= i {
			j++
		}
		return i, j
	}
	cum := p.cum
	total := cum[n-1]
	r, _ := bits.Mul64(x, total) // uniform in [0, W), without modulo bias
	i = p.find(r)
	lo := cum[i] - uint64(p.set.Backends[i].weight()) // i owns [lo, cum[i])
	r, _ = bits.Mul64(splitmix(s), total-(cum[i]-lo)) // uniform in [0, W-w_i)
	if r >= lo {
		r += cum[i] - lo // step over i's range
	}
	return i, p.find(r)
}

// find returns the backend whose weight range holds r (< the total
// weight): the first index with cum[i] > r, by binary search.
func (p *p2c) find(r uint64) uint64 {
	lo, hi := 0, len(p.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return uint64(lo)
}
