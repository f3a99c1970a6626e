package policy

import (
	"errors"
	"math"
	"time"
)

// Outcome is how a request to a backend ended, as the gateway judged it.
type Outcome uint8

const (
	// Success: the backend answered with a status that is not a failure.
	Success Outcome = iota
	// Failure: dial error, timeout, or a status configured as a failure.
	Failure
	// Ignored: the client went away (context.Canceled); neither the breaker
	// nor the latency statistics count it.
	Ignored
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "ignored"
}

var (
	errFailure = errors.New("backend failure")
	errIgnored = errors.New("request ignored")
)

// Ticket is one request's reservation on a backend. End it with Finish
// exactly once; the zero Ticket's Finish does nothing.
type Ticket struct {
	b     *Backend
	done  func(error)
	start int64 // registry clock
}

// Acquire is called right before forwarding a request to b: it asks the
// breaker (ErrBreakerOpen when it refuses: open, or half-open with its
// probes taken) and counts the request in flight. It takes gobreaker's
// per-backend mutex and allocates gobreaker's done callback.
func (b *Backend) Acquire() (Ticket, error) {
	done, err := b.st.breaker.Load().Allow()
	if err != nil {
		return Ticket{}, ErrBreakerOpen
	}
	b.st.inflight.Add(1)
	return Ticket{b: b, done: done, start: b.st.reg.now()}, nil
}

// Finish ends the request: it decrements the in-flight count, feeds the
// latency EWMA (Success and Failure only) and tells the breaker the
// outcome (Ignored is excluded from its counts). latency is what the EWMA
// gets: the time to the response's head, so that a long download, a
// stream or a WebSocket does not make a fast backend look slow; 0 (no head
// came) means the time since Acquire.
func (t Ticket) Finish(o Outcome, latency time.Duration) {
	if t.b == nil {
		return
	}
	st := t.b.st
	st.inflight.Add(-1)
	switch o {
	case Success, Failure:
		now := st.reg.now()
		sample := float64(now - t.start)
		if latency > 0 {
			sample = float64(latency)
		}
		st.observe(now, sample)
		if o == Success {
			t.done(nil)
		} else {
			t.done(errFailure)
		}
	default:
		t.done(errIgnored)
	}
}

// observe folds one latency sample (nanoseconds) into the EWMA. A sample's
// weight grows with the time since the previous one, 1 - e^(-Δt/τ), so
// the average decays by time rather than by count: a backend sampled
// rarely forgets old data as fast as a busy one. Lock-free: concurrent
// samples retry their CompareAndSwap.
func (st *state) observe(now int64, sample float64) {
	sample = max(sample, 1) // 0 would read as "no data"
	prev := st.sampled.Swap(now)
	w := 1 - math.Exp(-float64(now-prev)/float64(st.reg.options().LatencyDecay))
	for {
		old := st.ewma.Load()
		next := sample
		if cur := math.Float64frombits(old); cur != 0 && prev != 0 {
			next = cur + w*(sample-cur)
		}
		if st.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}
