package policy

import (
	"math/bits"
	"net/http"
)

// randomTries is how many random draws a pick makes before it falls back
// to an exact scan.
const randomTries = 3

// random picks a uniformly random usable backend. O(1) while backends are
// usable; when randomTries draws all miss it samples uniformly among the
// usable ones in one O(n) pass (probing onward from a random index would
// favour the backend after a dead one).
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
	n := uint64(len(bs))
	if n == 0 {
		return nil, ErrNoBackend
	}
	s := p.rand() // seeds the stream of further draws
	x := s
	for range randomTries {
		if b := bs[x%n]; usable(b, &skip) {
			return b, nil
		}
		x = splitmix(&s)
	}
	return sampleUsable(bs, &skip, s, false)
}

// sampleUsable returns a random usable backend, uniformly or, when
// weighted, in proportion to weight (reservoir sampling, one pass: the
// backend seen with running weight total T replaces the pick with
// probability w/T), or ErrNoBackend.
func sampleUsable(bs []*Backend, skip *Skip, x uint64, weighted bool) (*Backend, error) {
	var pick *Backend
	seen := uint64(0)
	for _, b := range bs {
		if !usable(b, skip) {
			continue
		}
		w := uint64(1)
		if weighted {
			w = uint64(b.weight())
		}
		seen += w
		if r, _ := bits.Mul64(splitmix(&x), seen); r < w {
			pick = b
		}
	}
	if pick == nil {
		return nil, ErrNoBackend
	}
	return pick, nil
}
