package forward

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// panicSession is rigSession whose done panics: a bug anywhere in the
// attempt, after the ticket was taken.
type panicSession struct{ rigSession }

var errCommitPanic = errors.New("commit panicked")

func (s panicSession) Pick(r *http.Request, skip *policy.Skip) (*policy.Backend, func(http.Header, *policy.Backend)) {
	b, _ := s.rigSession.Pick(r, skip)
	return b, func(http.Header, *policy.Backend) { panic(errCommitPanic) }
}

// Issue 22: attempt re-raised a panic (other than http.ErrAbortHandler)
// before finishing the ticket: the in-flight count leaked, and a
// half-open breaker's probe was never returned, so the backend was
// refused for good. The probe here is the attempt that panics.
func TestPanicFinishesTicket(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			srv := echo(t, "b0")
			r := newRig(t, p.slow, config.Route{}, func(c *config.Config) {
				c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
				c.Defaults.Breaker.OpenTimeout = config.Set(20 * time.Millisecond)
				c.Defaults.Breaker.HalfOpenRequests = config.Set[uint32](1)
			}, strings.TrimPrefix(srv.URL, "http://"))
			b0 := r.set.Backends[0]
			if w, _ := r.do(get("/status/502", nil)); w.Code != 502 {
				t.Fatalf("status %d; want b0's 502 (its breaker opens)", w.Code)
			}
			// While the breaker is open the request is refused (503, no
			// panic); once it half-opens the request takes the probe and
			// its Commit panics.
			serve := func() (panicked any) {
				// A server cancels the request's context when its handler
				// panics; ReverseProxy's transport waits for that to let go
				// of the response it never closed.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				defer func() { panicked = recover() }()
				r.f.Serve(httptest.NewRecorder(), get("/", nil).WithContext(ctx), r.spec, panicSession{rigSession{r}})
				return nil
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				p := serve()
				if p == errCommitPanic {
					break
				}
				if p != nil {
					t.Fatalf("panic %v; want %v", p, errCommitPanic)
				}
				if time.Now().After(deadline) {
					t.Fatal("the breaker never let the probe through")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if n := b0.InFlight(); n != 0 {
				t.Fatalf("in flight %d after the attempt panicked; want 0", n)
			}
			// The probe came back (as a failure: the breaker reopens, then
			// half-opens again after its open timeout and admits a probe).
			for {
				tk, err := b0.Acquire()
				if err == nil {
					tk.Finish(policy.Ignored, 0)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the backend is still refused (%v): the panicked probe was never returned", err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
