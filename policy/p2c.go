package policy

import "net/http"

// p2c is the power of two random choices: two distinct random backends,
// the one with fewer requests in flight per unit of weight wins (the first
// drawn on a tie). O(1), and unlike least connections it does not send
// every replica's next request to the same idle backend when their views
// of load lag. The default policy.
type p2c struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*p2c)(nil)

func newP2C(set *Set, opts BuildOptions) Picker {
	return &p2c{set: set, rand: randFunc(opts)}
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
		// Two distinct indices, uniform over pairs.
		i := x % n
		j := (x >> 32) % (n - 1)
		if j >= i {
			j++
		}
		a, b := bs[i], bs[j]
		au, bu := usable(a, &skip), usable(b, &skip)
		switch {
		case au && bu:
			if b.st.inflight.Load()*a.weight() < a.st.inflight.Load()*b.weight() {
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
	return sampleUsable(bs, &skip, s) // most backends unusable
}
