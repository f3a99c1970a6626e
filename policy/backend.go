package policy

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/latchgw/latch/discovery"
)

// Backend is a discovery.Backend bound to the long-lived state latch keeps
// for it. The embedded Backend and the health verdicts are fixed for the
// Set it belongs to; the state is shared by every Set of the backend's ID
// and read and written with typed atomics only, so every method is safe
// for concurrent use and none locks (except Acquire and Ticket.Finish, which
// go through gobreaker's mutex).
type Backend struct {
	discovery.Backend
	st *state
	// Health verdicts of this snapshot (see Registry.Update): may the
	// backend keep its sessions, may it take new ones.
	keepOK, takeOK bool
}

// state outlives snapshots: one per backend ID in a Registry.
type state struct {
	id  string
	reg *Registry

	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 bits, nanoseconds; 0 = no data
	sampled  atomic.Int64  // registry clock of the last EWMA sample
	drained  atomic.Bool
	// upSince is the registry clock at which the backend became usable
	// again (slow start); 0 = not ramping.
	upSince atomic.Int64

	breaker atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]] // replaced when a reload changes its settings
	// bstate mirrors the breaker's state (set from OnStateChange), so a
	// pick need not take gobreaker's mutex. openUntil is when an open
	// breaker will let a probe through, on the monotonic clock gobreaker
	// itself uses (see mono).
	bstate    atomic.Int32
	openUntil atomic.Int64
	// bsince is when the breaker entered its state (unix nanos, wall
	// clock), or when the backend appeared if it never changed.
	bsince atomic.Int64

	// Live sessions, for least_sessions (leastsessions.go): counted is the
	// backend's count across every replica at the last refresh, local this
	// replica's new sessions since that refresh began.
	counted atomic.Int64
	local   atomic.Int64

	// takeHealth: the last snapshot's health let the backend take new
	// sessions (ignoring panic mode). Only Update touches it, under the
	// registry's lock.
	takeHealth bool
}

// InFlight is the number of requests being served by b (Acquired and not
// yet Finished).
func (b *Backend) InFlight() int64 { return b.st.inflight.Load() }

// Latency is the EWMA of b's response times; 0 means no data yet.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.st.ewma.Load()))
}

// Breaker is the state of b's circuit breaker. An open breaker whose
// timeout passed still reads Open until a request probes it.
func (b *Backend) Breaker() BreakerState { return BreakerState(b.st.bstate.Load()) }

// BreakerSince is when b's breaker entered its current state, or when b
// first appeared if the breaker never changed.
func (b *Backend) BreakerSince() time.Time { return time.Unix(0, b.st.bsince.Load()) }

// SlowStart is b's slow-start progress in [0, 1]: its share of new
// sessions relative to a ramped-up backend (1: not ramping).
func (b *Backend) SlowStart() float64 {
	f, _ := b.rampProgress()
	return f
}

// Drained reports whether b was drained through the admin API.
func (b *Backend) Drained() bool { return b.st.drained.Load() }

// CanKeep reports whether b may keep serving the sessions pinned to it:
// its health is Passing, Warning (when Warning backends are usable) or
// Draining, and its breaker is not open (an open breaker whose timeout
// passed lets a probe through, so it counts as usable).
func (b *Backend) CanKeep() bool { return b.keepOK && b.breakerOK() }

// Recovering reports whether b keeps its sessions (CanKeep) while its
// breaker lets through only the probes that decide whether it closes:
// half-open, or open with its timeout passed (the next request is the
// probe). Acquire refuses every other request meanwhile.
func (b *Backend) Recovering() bool {
	return b.keepOK && BreakerState(b.st.bstate.Load()) != Closed && b.breakerOK()
}

// CanTake reports whether b may get new sessions: CanKeep, its health is
// Passing (or Warning when allowed), and it is not drained.
func (b *Backend) CanTake() bool {
	return b.takeOK && !b.st.drained.Load() && b.breakerOK()
}

// breakerOK reads the breaker mirror; the clock is only read when the
// breaker is open.
func (b *Backend) breakerOK() bool {
	if BreakerState(b.st.bstate.Load()) != Open {
		return true
	}
	return mono() >= b.st.openUntil.Load()
}

// rampFactor is b's share of new sessions during slow start, in [0, 1].
// The first call after the window ends clears the ramp, so a ramped-up
// backend costs one atomic load.
func (b *Backend) rampFactor() float64 {
	f, since := b.rampProgress()
	if f >= 1 && since != 0 {
		b.st.upSince.CompareAndSwap(since, 0)
	}
	return f
}

// rampProgress is b's ramp factor and the ramp start it was computed from
// (0: not ramping).
func (b *Backend) rampProgress() (float64, int64) {
	since := b.st.upSince.Load()
	if since == 0 {
		return 1, 0
	}
	window := b.st.reg.options().SlowStart
	elapsed := b.st.reg.now() - since
	if window <= 0 || elapsed >= int64(window) {
		return 1, since
	}
	return max(float64(elapsed)/float64(window), 0), since
}

// latency is the EWMA for picks, in nanoseconds, or 0 when there is none
// or it is older than three time constants: a backend avoided for being
// slow gets a fresh trial instead of being starved forever.
func (b *Backend) latency(now int64) float64 {
	st := b.st
	if now-st.sampled.Load() > 3*int64(st.reg.options().LatencyDecay) {
		return 0
	}
	return math.Float64frombits(st.ewma.Load())
}

// weight is b's weight for load comparisons (at least 1).
func (b *Backend) weight() int64 { return int64(max(b.Weight, 1)) }
