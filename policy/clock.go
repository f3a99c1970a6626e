package policy

import "time"

// epoch anchors mono.
var epoch = time.Now()

// mono is a monotonic clock in nanoseconds, always > 0. gobreaker measures
// its open timeout with time.Now's monotonic reading, and the breaker
// mirror must agree with it whatever clock a Registry was given.
func mono() int64 { return int64(time.Since(epoch)) + 1 }

// now is the registry's clock in nanoseconds: Options.Now when injected
// (tests), else mono. Slow start, latency samples and their decay use it.
func (r *Registry) now() int64 {
	if now := r.options().Now; now != nil {
		return now().UnixNano()
	}
	return mono()
}
