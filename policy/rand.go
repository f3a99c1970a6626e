package policy

import "math/rand/v2"

// randFunc returns opts.Rand or the global concurrency-safe source.
func randFunc(opts BuildOptions) func() uint64 {
	if opts.Rand != nil {
		return opts.Rand
	}
	return rand.Uint64
}

// splitmix advances a per-pick random stream seeded from one call of the
// shared source (splitmix64): further random numbers within a pick cost no
// shared state.
func splitmix(state *uint64) uint64 {
	*state += 0x9e3779b97f4a7c15
	return mix(*state)
}

// unit maps x to [0, 1).
func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }

// oneIn reports true with probability about 1/n (n < 2^32), from one step
// of the stream: Lemire's multiply-shift instead of a division, which
// would dominate a scan that meets a tie at every backend.
func oneIn(state *uint64, n uint64) bool {
	return (splitmix(state)&0xffffffff)*n>>32 == 0
}
