package policy

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerState is a circuit breaker's state.
type BreakerState int32

const (
	// Closed: requests flow; failures are counted.
	Closed BreakerState = iota
	// HalfOpen: a few probe requests decide between Closed and Open.
	HalfOpen
	// Open: no requests until OpenTimeout has passed.
	Open
)

// String names the breaker state (closed, half-open, open).
func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

// BreakerSettings configure every backend's circuit breaker. Zero fields
// take the defaults in brackets.
type BreakerSettings struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row [5]. Ignored when FailureRatio is set.
	ConsecutiveFailures uint32
	// FailureRatio, if > 0, trips the breaker when failures/(failures +
	// successes) >= FailureRatio ...
	FailureRatio float64
	// ... over at least MinRequests finished requests in Interval [20].
	MinRequests uint32
	// Interval is the closed state's counting window: counts are cleared
	// at its end [10s].
	Interval time.Duration
	// OpenTimeout is how long an open breaker refuses requests before it
	// goes half-open [10s].
	OpenTimeout time.Duration
	// HalfOpenRequests is how many probes a half-open breaker lets
	// through; that many successes close it, one failure reopens it [1].
	HalfOpenRequests uint32
}

// Validate checks the settings; the error names the faulty field by its
// config name (the caller adds the "breaker" prefix).
func (s BreakerSettings) Validate() error {
	var errs []error
	if math.IsNaN(s.FailureRatio) || s.FailureRatio < 0 || s.FailureRatio > 1 {
		errs = append(errs, fmt.Errorf("failure_ratio: %v is not in (0, 1] (0: off)", s.FailureRatio))
	}
	if s.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval: %v is negative", s.Interval))
	}
	if s.OpenTimeout < 0 {
		errs = append(errs, fmt.Errorf("open_timeout: %v is negative", s.OpenTimeout))
	}
	return errors.Join(errs...)
}

// DefaultBreakerSettings are the settings a zero BreakerSettings stands for.
func DefaultBreakerSettings() BreakerSettings { return BreakerSettings{}.withDefaults() }

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.MinRequests == 0 {
		s.MinRequests = 20
	}
	if s.Interval <= 0 {
		s.Interval = 10 * time.Second
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 10 * time.Second
	}
	if s.HalfOpenRequests == 0 {
		s.HalfOpenRequests = 1
	}
	return s
}

// readyToTrip is gobreaker's trip decision for these settings. The ratio
// counts finished requests only: gobreaker's Requests also counts requests
// still in flight and ignored ones.
func (s BreakerSettings) readyToTrip(c gobreaker.Counts) bool {
	if s.FailureRatio > 0 {
		done := c.TotalSuccesses + c.TotalFailures
		return done >= s.MinRequests && float64(c.TotalFailures) >= s.FailureRatio*float64(done)
	}
	return c.ConsecutiveFailures >= s.ConsecutiveFailures
}

// newBreaker builds st's breaker. OnStateChange runs under gobreaker's
// mutex: it only updates st's atomic mirror and calls the registry's
// callback (which must only log and count).
func (r *Registry) newBreaker(st *state) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	opts := r.options()
	bs := opts.Breaker
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        st.id,
		MaxRequests: bs.HalfOpenRequests,
		Interval:    bs.Interval,
		Timeout:     bs.OpenTimeout,
		ReadyToTrip: bs.readyToTrip,
		IsExcluded:  func(err error) bool { return err == errIgnored },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			f, t := fromGobreaker(from), fromGobreaker(to)
			if t == Open {
				// Store the deadline before the state, so a pick that
				// sees Open also sees its deadline.
				st.openUntil.Store(mono() + int64(bs.OpenTimeout))
			}
			if f == HalfOpen && t == Closed {
				r.ramp(st) // recovered: slow start again
			}
			st.bstate.Store(int32(t))
			st.bsince.Store(time.Now().UnixNano())
			if opts.OnBreakerChange != nil {
				opts.OnBreakerChange(st.id, f, t)
			}
		},
	})
}

func fromGobreaker(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateHalfOpen:
		return HalfOpen
	case gobreaker.StateOpen:
		return Open
	}
	return Closed
}
