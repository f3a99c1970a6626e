package policy

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/latchgw/latch/discovery"
)

// Backend is a discovery.Backend bound to the long-lived state latch keeps
// for it. The embedded Backend is immutable; the state is read and written
// with typed atomics only.
type Backend struct {
	discovery.Backend
	st     *state
	warnOK bool // Warning backends may take new sessions
	panic  bool // the set is in panic mode: health is not trusted
}

// state outlives snapshots: one per backend ID in a Registry.
type state struct {
	id       string
	reg      *Registry
	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 bits, nanoseconds; 0 = no data
	sampled  atomic.Int64  // unix nanos of the last EWMA sample
	drained  atomic.Bool
	upSince  atomic.Int64 // unix nanos the backend became usable again; 0 = not ramping

	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	bstate    atomic.Int32 // BreakerState mirror, so picks need not take gobreaker's lock
	openUntil atomic.Int64 // unix nanos when an open breaker lets a probe through
	health    discovery.Health
}

// BreakerState is a circuit breaker's state.
type BreakerState int32

const (
	Closed BreakerState = iota
	HalfOpen
	Open
)

func (s BreakerState) String() string {
	switch s {
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "closed"
}

// Outcome is how a request to a backend ended.
type Outcome uint8

const (
	// Success: the backend answered with a status that is not a failure.
	Success Outcome = iota
	// Failure: dial error, timeout, or a failure status.
	Failure
	// Ignored: the client went away; neither the breaker nor the latency
	// statistics count it.
	Ignored
)

var (
	errFailure = errors.New("backend failure")
	errIgnored = errors.New("ignored")
)

// InFlight is the number of requests being served by b.
func (b *Backend) InFlight() int64 { return b.st.inflight.Load() }

// Latency is the EWMA of b's response times; 0 means no data yet.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.st.ewma.Load()))
}

// Breaker is the state of b's circuit breaker.
func (b *Backend) Breaker() BreakerState { return BreakerState(b.st.bstate.Load()) }

// Drained reports whether b was drained through the admin API.
func (b *Backend) Drained() bool { return b.st.drained.Load() }

// CanKeep reports whether b may keep serving the sessions pinned to it:
// it is not critical and its breaker is not open (an open breaker whose
// timeout passed lets a probe through, so it counts as usable).
func (b *Backend) CanKeep() bool { return b.canKeep(b.st.reg.now()) }

// CanTake reports whether b may get new sessions: CanKeep, passing (or
// warning when allowed), not draining and not drained.
func (b *Backend) CanTake() bool { return b.canTake(b.st.reg.now()) }

func (b *Backend) canKeep(now int64) bool {
	if b.Health == discovery.Critical && !b.panic {
		return false
	}
	return BreakerState(b.st.bstate.Load()) != Open || now >= b.st.openUntil.Load()
}

func (b *Backend) canTake(now int64) bool {
	switch b.Health {
	case discovery.Passing:
	case discovery.Warning:
		if !b.warnOK && !b.panic {
			return false
		}
	case discovery.Critical:
		if !b.panic {
			return false
		}
	default: // Draining
		return false
	}
	return !b.st.drained.Load() && b.canKeep(now)
}

// rampFactor is b's share of new sessions during slow start, in (0, 1].
func (b *Backend) rampFactor(now int64) float64 {
	since := b.st.upSince.Load()
	window := b.st.reg.opts.SlowStart
	if since == 0 || window <= 0 {
		return 1
	}
	f := float64(now-since) / float64(window)
	if f >= 1 {
		b.st.upSince.CompareAndSwap(since, 0)
		return 1
	}
	return max(f, 0.01)
}

// Ticket is one request's reservation on a backend: finish it with Done
// exactly once.
type Ticket struct {
	b     *Backend
	done  func(error)
	start int64
}

// Acquire is called right before forwarding a request to b: it asks the
// breaker (ErrBreakerOpen when it refuses) and counts the request in flight.
func (b *Backend) Acquire() (Ticket, error) {
	done, err := b.st.breaker.Allow()
	if err != nil {
		return Ticket{}, ErrBreakerOpen
	}
	b.st.inflight.Add(1)
	return Ticket{b: b, done: done, start: b.st.reg.now()}, nil
}

// Done ends the request: it tells the breaker the outcome and, on success,
// feeds the latency EWMA with the time since Acquire.
func (t Ticket) Done(o Outcome) {
	if t.b == nil {
		return
	}
	st := t.b.st
	st.inflight.Add(-1)
	switch o {
	case Success:
		t.done(nil)
		now := st.reg.now()
		st.observe(now, float64(now-t.start))
	case Failure:
		t.done(errFailure)
	default:
		t.done(errIgnored)
	}
}

// observe folds one latency sample into the EWMA. The weight of a sample
// grows with the time since the previous one (1 - e^(-Δt/τ)), so a backend
// sampled rarely forgets old data as fast as a busy one.
func (st *state) observe(now int64, sample float64) {
	tau := float64(st.reg.opts.LatencyDecay)
	prevT := st.sampled.Swap(now)
	w := 1 - math.Exp(-float64(now-prevT)/tau)
	for {
		old := st.ewma.Load()
		cur := math.Float64frombits(old)
		next := sample
		if cur != 0 {
			next = cur + w*(sample-cur)
		}
		if st.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// latency is the EWMA for picks, or 0 when there is none or it is older
// than three time constants: a backend avoided for being slow gets a fresh
// trial instead of being starved forever.
func (b *Backend) latency(now int64) float64 {
	st := b.st
	if now-st.sampled.Load() > 3*int64(st.reg.opts.LatencyDecay) {
		return 0
	}
	return math.Float64frombits(st.ewma.Load())
}
