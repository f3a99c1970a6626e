package policy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/latchgw/latch/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is an injected clock for slow start and latency statistics.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backends returns n passing backends b00, b01, ... with the given weights
// (1 for the rest).
func backends(n int, weights ...int) []discovery.Backend {
	out := make([]discovery.Backend, n)
	for i := range out {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		out[i] = discovery.Backend{ID: fmt.Sprintf("b%02d", i), Service: "web",
			Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Weight: w, Health: discovery.Passing}
	}
	return out
}

func snapshot(bs []discovery.Backend) discovery.Snapshot {
	return discovery.Snapshot{Service: "web", Backends: bs}
}

func newSet(t testing.TB, opts Options, bs []discovery.Backend) (*Registry, *Set) {
	t.Helper()
	r := NewRegistry("web", opts)
	return r, r.Update(snapshot(bs))
}

// seeded is a deterministic, concurrency-safe rand for pickers.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() uint64 { mu.Lock(); defer mu.Unlock(); return r.Uint64() }
}

var req = httptest.NewRequest(http.MethodGet, "/", nil)

// keyed is a request every picker has a key and an opinion for, with
// keyedOpts.
func keyed() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User", "u1")
	r.Header.Set("Cookie", "sid=abc")
	return r
}

var keyedOpts = BuildOptions{HashHeader: "X-User", HashCookie: "sid"}

// warm gives every backend of set a latency sample, so that
// least_response_time does not decline.
func warm(t testing.TB, set *Set) {
	t.Helper()
	for _, b := range set.Backends {
		if b.CanTake() {
			request(t, b, Success)
		}
	}
}

// pickN counts n picks of p by backend ID.
func pickN(t testing.TB, p Picker, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		b, err := p.Pick(req, Skip{})
		if err != nil {
			t.Fatal(err)
		}
		counts[b.ID]++
	}
	return counts
}

// hold acquires n tickets on b; release them with done.
func hold(t testing.TB, b *Backend, n int) (done func()) {
	t.Helper()
	tickets := make([]Ticket, n)
	for i := range tickets {
		tk, err := b.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		tickets[i] = tk
	}
	return func() {
		for _, tk := range tickets {
			tk.Finish(Success, 0)
		}
	}
}

// request runs one request on b with outcome o.
func request(t testing.TB, b *Backend, o Outcome) {
	t.Helper()
	tk, err := b.Acquire()
	if err != nil {
		t.Fatalf("%s: Acquire: %v", b.ID, err)
	}
	tk.Finish(o, 0)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for time to pass
	}
}
