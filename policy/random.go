package policy

import "net/http"

// random picks a uniformly random usable backend (probing onward from a
// random index past unusable ones).
type random struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*random)(nil)

func newRandom(set *Set, opts BuildOptions) Picker {
	return &random{set: set, rand: randFunc(opts)}
}

func (p *random) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	bs := p.set.Backends
	n := len(bs)
	if n == 0 {
		return nil, ErrNoBackend
	}
	now := bs[0].st.reg.now()
	start := int(p.rand() % uint64(n))
	for i := range n {
		if b := bs[(start+i)%n]; usable(b, skip, now) {
			return b, nil
		}
	}
	return nil, ErrNoBackend
}

// p2c is the power of two random choices: two random backends, the one
// with less load (in flight per weight) wins. O(1), and it avoids the herd
// behaviour of least-connections across many replicas with stale views.
type p2c struct {
	set  *Set
	rand func() uint64
}

var _ Picker = (*p2c)(nil)

func newP2C(set *Set, opts BuildOptions) Picker {
	return &p2c{set: set, rand: randFunc(opts)}
}

func (p *p2c) Pick(r *http.Request, skip Skip) (*Backend, error) {
	bs := p.set.Backends
	n := len(bs)
	if n == 0 {
		return nil, ErrNoBackend
	}
	now := bs[0].st.reg.now()
	x := p.rand()
	i := int(x % uint64(n))
	j := int((x >> 32) % uint64(n))
	if n > 1 && i == j {
		j = (j + 1) % n
	}
	a, b := bs[i], bs[j]
	au, bu := usable(a, skip, now), usable(b, skip, now)
	switch {
	case au && bu:
		la, lb := a.st.inflight.Load()*int64(max(b.Weight, 1)), b.st.inflight.Load()*int64(max(a.Weight, 1))
		if lb < la {
			return b, nil
		}
		return a, nil
	case au:
		return a, nil
	case bu:
		return b, nil
	}
	// Both choices unusable: scan from the first (rare: most backends down).
	for k := range n {
		if c := bs[(i+k)%n]; usable(c, skip, now) {
			return c, nil
		}
	}
	return nil, ErrNoBackend
}
