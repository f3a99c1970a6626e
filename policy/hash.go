package policy

import (
	"github.com/cespare/xxhash/v2"
)

// hashTable is consistent hashing as a lookup table precomputed on the
// state path, as Maglev does, but filled by rendezvous (highest random
// weight) hashing instead of Maglev's permutations: each of m buckets
// belongs to the backend with the highest score for it. Maglev's filling
// moves a few keys between backends that both stayed when one leaves;
// rendezvous moves exactly the leaver's buckets, spread evenly over the
// others, so about 1/n of keys move and no key whose backend stayed does.
// The price is an O(m·n) build instead of O(m log m); it is paid once per
// change of the ID list (see Set.hashTable), never per request. A pick is
// a hash and an index, O(1).
//
// Scores depend only on the backend IDs, so every latch replica builds
// the same table. Weights are not used: a key's home must not depend on
// how busy a backend is declared.
type hashTable struct {
	ids     []string
	idHash  []uint64 // xxhash of each ID, for the exact fallback
	buckets []uint32 // index into the Set's Backends
	mask    uint64
}

// maxProbes bounds the walk over buckets of unusable backends before the
// exact O(n) fallback.
const maxProbes = 32

// tableSize is a power of two with at least 32 buckets per backend and
// 4096 in all: a backend's share of buckets deviates from 1/n by about
// 1/sqrt(m/n) (±5% of its share for 10 backends, ±18% for 1024).
func tableSize(n int) int {
	m := 4096
	for m < 32*n {
		m *= 2
	}
	return m
}

func newHashTable(bs []*Backend) *hashTable {
	n := len(bs)
	t := &hashTable{ids: make([]string, n), idHash: make([]uint64, n)}
	for i, b := range bs {
		t.ids[i], t.idHash[i] = b.ID, xxhash.Sum64String(b.ID)
	}
	if n == 0 {
		return t
	}
	m := tableSize(n)
	t.buckets, t.mask = make([]uint32, m), uint64(m-1)
	for k := range uint64(m) {
		kh := mix(k + 1)
		best, bestScore := 0, uint64(0)
		for i, id := range t.idHash {
			if s := mix(id ^ kh); s > bestScore {
				best, bestScore = i, s
			}
		}
		t.buckets[k] = uint32(best)
	}
	return t
}

// sameIDs reports whether t was built for backends with these IDs.
func (t *hashTable) sameIDs(bs []*Backend) bool {
	if len(bs) != len(t.ids) {
		return false
	}
	for i, b := range bs {
		if b.ID != t.ids[i] {
			return false
		}
	}
	return true
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// pick returns the backend of key among bs (the Set the table was built
// for). When the key's bucket belongs to a backend that cannot take it,
// the following buckets are tried, then every backend by rendezvous score:
// a key's fallback is as consistent as its home.
func (t *hashTable) pick(bs []*Backend, key uint64, skip *Skip) (*Backend, error) {
	if len(t.buckets) == 0 {
		return nil, ErrNoBackend
	}
	for i := range uint64(maxProbes) {
		if b := bs[t.buckets[(key+i)&t.mask]]; usable(b, skip) {
			return b, nil
		}
	}
	var best *Backend
	var bestScore uint64
	kh := mix(key)
	for i, b := range bs {
		if s := mix(t.idHash[i] ^ kh); (best == nil || s > bestScore) && usable(b, skip) {
			best, bestScore = b, s
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	return best, nil
}
