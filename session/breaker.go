package session

import (
	"sync/atomic"
	"time"
)

// storeBreaker keeps requests away from a Store that is failing: after 3
// failures in a row it opens for a cooldown (250ms, doubling per failed
// probe up to 5s) and then lets one probe through. Lock-free.
type storeBreaker struct {
	failures  atomic.Int32
	openUntil atomic.Int64 // unix nanos; 0 = closed
	cooldown  atomic.Int64
	probing   atomic.Bool
}

const (
	breakerThreshold = 3
	minCooldown      = 250 * time.Millisecond
	maxCooldown      = 5 * time.Second
)

func (b *storeBreaker) allow(now int64) bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	if now < u {
		return false
	}
	return b.probing.CompareAndSwap(false, true)
}

// failure records a failed call; it reports whether the breaker opened now.
func (b *storeBreaker) failure(now int64) bool {
	if b.probing.Load() {
		c := min(2*b.cooldown.Load(), int64(maxCooldown))
		b.cooldown.Store(c)
		b.openUntil.Store(now + c)
		b.probing.Store(false)
		return false
	}
	if b.failures.Add(1) >= breakerThreshold && b.openUntil.Load() == 0 {
		b.cooldown.Store(int64(minCooldown))
		b.openUntil.Store(now + int64(minCooldown))
		return true
	}
	return false
}

// success records a good call; it reports whether the breaker closed now.
func (b *storeBreaker) success() bool {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.openUntil.Load() == 0 {
		return false
	}
	b.openUntil.Store(0)
	b.probing.Store(false)
	return true
}
