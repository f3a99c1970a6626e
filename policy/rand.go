package policy

import "math/rand/v2"

// randFunc returns opts.Rand or the global concurrency-safe source.
func randFunc(opts BuildOptions) func() uint64 {
	if opts.Rand != nil {
		return opts.Rand
	}
	return rand.Uint64
}
