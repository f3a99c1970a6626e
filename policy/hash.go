package policy

import (
	"encoding/binary"
	"math/bits"
	"net/http"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// hashTable is consistent hashing as a precomputed lookup table: the key's
// hash picks one of m buckets, and each bucket belongs to the backend with
// the highest rendezvous (highest-random-weight) score for it. Removing a
// backend reassigns exactly its own buckets, spread over the others: about
// 1/n of keys move and no key whose backend stayed moves. Building costs
// O(m·n) on the state path; a pick is a hash and an index, O(1).
//
// Scores depend only on the backend IDs, so every latch replica builds the
// same table. A bucket whose backend cannot take the request probes the
// next buckets, so a key's fallback is consistent too.
type hashTable struct {
	set     *Set
	buckets []uint32
	mask    uint64
}

// tableSize is a power of two with at least 32 buckets per backend (and
// 4096 in all), which keeps each backend's share within a few percent.
func tableSize(n int) int {
	m := 4096
	for m < 32*n {
		m *= 2
	}
	return m
}

func newHashTable(set *Set) *hashTable {
	n := len(set.Backends)
	t := &hashTable{set: set}
	if n == 0 {
		return t
	}
	m := tableSize(n)
	t.buckets, t.mask = make([]uint32, m), uint64(m-1)
	ids := make([]uint64, n)
	for i, b := range set.Backends {
		ids[i] = xxhash.Sum64String(b.ID)
	}
	for k := range m {
		best, bestScore := 0, uint64(0)
		for i, id := range ids {
			if s := mix(id ^ uint64(k)*0x9e3779b97f4a7c15); s > bestScore || i == 0 {
				best, bestScore = i, s
			}
		}
		t.buckets[k] = uint32(best)
	}
	return t
}

// mix is a 64-bit finalizer (from splitmix64) for rendezvous scores.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (t *hashTable) pick(key uint64, skip Skip) (*Backend, error) {
	if len(t.buckets) == 0 {
		return nil, ErrNoBackend
	}
	bs := t.set.Backends
	now := bs[0].st.reg.now()
	k := bits.RotateLeft64(key, 17) // decorrelate from the bucket scores
	for i := range uint64(len(t.buckets)) {
		b := bs[t.buckets[(k+i)&t.mask]]
		if usable(b, skip, now) {
			return b, nil
		}
		if i > uint64(4*len(bs)) && i > 64 {
			break // most buckets probed are of unusable backends: give up fast
		}
	}
	return nil, ErrNoBackend
}

// ipHash keys on the client address (see ClientIP).
type ipHash struct {
	*hashTable
	trusted []Prefix
}

func newIPHash(set *Set, opts BuildOptions) Picker {
	return &ipHash{hashTable: newHashTable(set), trusted: opts.TrustedProxies}
}

func (h *ipHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	a := ClientIP(r, h.trusted)
	if !a.IsValid() {
		return nil, ErrDecline
	}
	b16 := a.As16()
	return h.pick(xxhash.Sum64(b16[:])^binary.LittleEndian.Uint64(b16[8:]), skip)
}

// headerHash keys on a request header's value; it declines when absent.
type headerHash struct {
	*hashTable
	name string
}

func newHeaderHash(set *Set, opts BuildOptions) Picker {
	return &headerHash{hashTable: newHashTable(set), name: http.CanonicalHeaderKey(opts.HashHeader)}
}

func (h *headerHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	vs := r.Header[h.name]
	if len(vs) == 0 || vs[0] == "" {
		return nil, ErrDecline
	}
	return h.pick(xxhash.Sum64String(vs[0]), skip)
}

// cookieHash keys on a request cookie's value; it declines when absent.
type cookieHash struct {
	*hashTable
	name string
}

func newCookieHash(set *Set, opts BuildOptions) Picker {
	return &cookieHash{hashTable: newHashTable(set), name: opts.HashCookie}
}

func (h *cookieHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	v := cookieValue(r.Header["Cookie"], h.name)
	if v == "" {
		return nil, ErrDecline
	}
	return h.pick(xxhash.Sum64String(v), skip)
}

// cookieValue finds a cookie in Cookie header lines without allocating.
func cookieValue(lines []string, name string) string {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}
