package session

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The store's breaker keeps requests away from a store that is failing:
// after 3 failures in a row it opens for storeCooldown, then lets one probe
// through. A call the client abandoned (context.Canceled) counts neither
// way: it says nothing about the store, and a client leaving during the
// probe must not close the breaker (nor log that the store is back).

const (
	storeTrip     = 3
	storeCooldown = 250 * time.Millisecond
)

func newStoreBreaker(log *slog.Logger) *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "session store",
		MaxRequests: 1,
		Timeout:     storeCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= storeTrip },
		IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// Runs under the breaker's mutex: log, nothing more.
			switch {
			case from == gobreaker.StateClosed && to == gobreaker.StateOpen:
				log.Warn("session store unreachable: serving from the local cache and cookie hints")
			case to == gobreaker.StateClosed:
				log.Info("session store reachable again")
			}
		},
	})
}

// call runs one Store call under the breaker and the timeout, measuring
// it. (Execute, not the two-step breaker: its done callback would cost an
// allocation per call.)
func (a *Affinity) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	return a.callFor(ctx, a.opts.StoreTimeout, op, f)
}

// settleTimeout bounds the calls that settle a re-pin between replicas:
// the compare-and-swap, its replay, and the lookups of a session whose
// re-pin is in doubt. They are rare (a backend died) and a lost answer
// costs agreement, so they wait longer than other calls (issue 12: under
// load, 25ms timeouts left replicas on different backends).
func (a *Affinity) settleTimeout() time.Duration {
	return max(4*a.opts.StoreTimeout, 100*time.Millisecond)
}

// settle runs a call that settles a re-pin, bounded by settleTimeout. Like
// every call it goes through the breaker: while the store is known down it
// fails at once (ErrStoreDown), the re-pin is kept for replay, and the
// cookie's hint and the local cache keep the session's affinity. Issue 22:
// settle used to try the store even with the breaker open, so a store that
// does not answer cost every re-pin, and every lookup of a session whose
// re-pin was in doubt, settleTimeout. The replay (a compare-and-swap
// against the pin the re-pin replaced) still settles it with the other
// replicas once the store answers.
func (a *Affinity) settle(ctx context.Context, op string, f func(ctx context.Context) error) error {
	return a.callFor(ctx, a.settleTimeout(), op, f)
}

// measured runs f with the timeout d and records its latency and error
// (a cancelled context is not the store's error).
func (a *Affinity) measured(ctx context.Context, d time.Duration, op string, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	start := time.Now()
	err := f(cctx)
	cancel()
	a.opts.Metrics.StoreLatency(op, time.Since(start))
	if err != nil && !errors.Is(err, context.Canceled) {
		a.opts.Metrics.StoreError(op)
	}
	return err
}

// callFor is call with the timeout d.
func (a *Affinity) callFor(ctx context.Context, d time.Duration, op string, f func(ctx context.Context) error) error {
	_, err := a.br.Execute(func() (struct{}, error) {
		return struct{}{}, a.measured(ctx, d, op, f)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrStoreDown
	}
	return err
}
