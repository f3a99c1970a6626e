package discovery

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is capped exponential backoff with full jitter: the n-th retry
// (n from 0) waits a random time in [min, min(max, min·2ⁿ)].
type backoff struct {
	min, max time.Duration
	rand     func() float64 // in [0,1)
}

func (b backoff) delay(n int) time.Duration {
	ceil := b.min
	for i := 0; i < n && ceil < b.max; i++ {
		ceil *= 2
	}
	if ceil > b.max {
		ceil = b.max
	}
	r := b.rand
	if r == nil {
		r = rand.Float64
	}
	return b.min + time.Duration(r()*float64(ceil-b.min))
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
