package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
)

// clock is an injected clock for slow start and latency decay.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func backends(n int, weights ...int) []discovery.Backend {
	out := make([]discovery.Backend, n)
	for i := range out {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		out[i] = discovery.Backend{ID: fmt.Sprintf("b%02d", i), Service: "web", Addr: fmt.Sprintf("10.0.0.%d:80", i), Weight: w, Health: discovery.Passing}
	}
	return out
}

func newSet(t testing.TB, opts Options, bs []discovery.Backend) (*Registry, *Set) {
	t.Helper()
	r := NewRegistry("web", opts)
	return r, r.Update(discovery.Snapshot{Service: "web", Backends: bs})
}

// seeded is a deterministic, concurrency-safe rand for pickers.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() uint64 { mu.Lock(); defer mu.Unlock(); return r.Uint64() }
}

var req = httptest.NewRequest(http.MethodGet, "/", nil)

func pickN(t *testing.T, p Picker, n int) map[string]int {
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

// Every algorithm spreads picks over equal backends; tolerance per
// algorithm is in the table (deterministic ones are exact).
func TestDistribution(t *testing.T) {
	tests := []struct {
		name string
		tol  float64 // allowed relative deviation from the fair share
	}{
		{"round_robin", 0},
		{"weighted_round_robin", 0},
		{"least_connections", 0.15}, // nothing in flight: random tie-breaks
		{"random", 0.1},
		{"p2c", 0.1},
	}
	const picks = 40_000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, set := newSet(t, Options{}, backends(4))
			p := Builders[tt.name](set, BuildOptions{Rand: seeded(1)})
			for id, n := range pickN(t, p, picks) {
				if dev := math.Abs(float64(n)/(picks/4) - 1); dev > tt.tol {
					t.Errorf("%s got %d picks (%.1f%% off the fair share); tolerance %.0f%%", id, n, dev*100, tt.tol*100)
				}
			}
		})
	}
}

// nginx's smooth weighted round robin: {5,1,1} interleaves as a a b a c a a.
func TestSmoothWRRSequence(t *testing.T) {
	_, set := newSet(t, Options{}, backends(3, 5, 1, 1))
	p := newWeightedRoundRobin(set, BuildOptions{Rand: func() uint64 { return 0 }})
	var seq []string
	for range 14 {
		b, _ := p.Pick(req, Skip{})
		seq = append(seq, map[string]string{"b00": "a", "b01": "b", "b02": "c"}[b.ID])
	}
	if got, want := strings.Join(seq, " "), "a a b a c a a a a b a c a a"; got != want {
		t.Fatalf("sequence %q; want %q", got, want)
	}
}

func TestWeightsRespected(t *testing.T) {
	_, set := newSet(t, Options{}, backends(3, 3, 2, 1))
	counts := pickN(t, newWeightedRoundRobin(set, BuildOptions{}), 6000)
	if counts["b00"] != 3000 || counts["b01"] != 2000 || counts["b02"] != 1000 {
		t.Fatalf("weights 3:2:1 gave %v", counts)
	}
}

// Under concurrent load, least_connections sends new requests to the
// backends with the fewest in flight.
func TestLeastConnectionsUnderLoad(t *testing.T) {
	_, set := newSet(t, Options{}, backends(4))
	p := newLeastConnections(set, BuildOptions{Rand: seeded(2)})
	// Hold 8 requests on b00 and 4 on b01.
	var held []Ticket
	for i, n := range []int{8, 4} {
		for range n {
			tk, err := set.Backends[i].Acquire()
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, tk)
		}
	}
	// 40 concurrent goroutines each pick and hold: b02 and b03 catch up
	// first, and nothing goes to b00 until all have 8.
	var mu sync.Mutex
	var wg sync.WaitGroup
	counts := map[string]int{}
	for range 12 {
		wg.Go(func() {
			b, err := p.Pick(req, Skip{})
			if err != nil {
				t.Error(err)
				return
			}
			tk, _ := b.Acquire()
			mu.Lock()
			counts[b.ID]++
			held = append(held, tk)
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts["b00"] != 0 {
		t.Fatalf("least loaded backends skipped: %v (b00 had 8 in flight)", counts)
	}
	if counts["b02"]+counts["b03"] < 8 {
		t.Fatalf("idle backends got %d of 12 picks: %v", counts["b02"]+counts["b03"], counts)
	}
	for _, tk := range held {
		tk.Done(Success)
	}
	for _, b := range set.Backends {
		if b.InFlight() != 0 {
			t.Fatalf("%s in flight %d after every ticket finished", b.ID, b.InFlight())
		}
	}
}

// Consistent hashing: removing 1 of 10 backends moves about 10% of keys,
// and only keys that were on the removed backend.
func TestConsistentHashingMovesOnlyTheRemovedBackendsKeys(t *testing.T) {
	bs := backends(10)
	_, before := newSet(t, Options{}, bs)
	_, after := newSet(t, Options{}, append(slices.Clone(bs[:3]), bs[4:]...)) // b03 leaves
	pb, pa := newHeaderHash(before, BuildOptions{HashHeader: "X-User"}), newHeaderHash(after, BuildOptions{HashHeader: "X-User"})
	const keys = 20_000
	moved := 0
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := range keys {
		r.Header.Set("X-User", fmt.Sprintf("user-%d", i))
		b1, _ := pb.Pick(r, Skip{})
		b2, _ := pa.Pick(r, Skip{})
		if b1.ID != b2.ID {
			moved++
			if b1.ID != "b03" {
				t.Fatalf("key %d moved from %s, which stayed, to %s", i, b1.ID, b2.ID)
			}
		}
	}
	// Expect 10% ± 2 points (each backend owns ~1/10 of 4096 buckets).
	if frac := float64(moved) / keys; frac < 0.08 || frac > 0.12 {
		t.Fatalf("removing 1 of 10 backends moved %.1f%% of keys; want 10%% ± 2", frac*100)
	}
}

func TestIPHashStableAndTrustedProxies(t *testing.T) {
	_, set := newSet(t, Options{}, backends(5))
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	p := newIPHash(set, BuildOptions{TrustedProxies: trusted})
	at := func(remote, xff string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		b, err := p.Pick(r, Skip{})
		if err != nil {
			t.Fatal(err)
		}
		return b.ID
	}
	if at("203.0.113.1:1", "") != at("203.0.113.1:2", "") {
		t.Fatal("same client IP, different ports: different backends")
	}
	// Through a trusted proxy the forwarded client decides...
	if at("10.1.1.1:1", "198.51.100.7") != at("198.51.100.7:9", "") {
		t.Fatal("trusted proxy: X-Forwarded-For client not used")
	}
	// ...from an untrusted peer it does not: spread 100 fake clients.
	seen := map[string]bool{}
	for i := range 100 {
		seen[at("203.0.113.9:1", fmt.Sprintf("198.51.100.%d", i))] = true
	}
	if len(seen) != 1 {
		t.Fatal("untrusted X-Forwarded-For changed the pick")
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy", "203.0.113.1:5", nil, "203.0.113.1"},
		{"untrusted peer with xff", "203.0.113.1:5", []string{"1.2.3.4"}, "203.0.113.1"},
		{"trusted peer", "10.0.0.1:5", []string{"1.2.3.4"}, "1.2.3.4"},
		{"chain of trusted", "10.0.0.1:5", []string{"1.2.3.4, 10.9.9.9"}, "1.2.3.4"},
		{"spoofed left part ignored", "10.0.0.1:5", []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{"several header lines", "10.0.0.1:5", []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4"},
		{"garbage stops the walk", "10.0.0.1:5", []string{"1.2.3.4, not-an-ip"}, "10.0.0.1"},
		{"ipv6 peer", "[::1]:5", []string{"2001:db8::1"}, "2001:db8::1"},
		{"all trusted", "10.0.0.1:5", []string{"10.0.0.2"}, "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			r.Header["X-Forwarded-For"] = tt.xff
			if got := ClientIP(r, trusted).String(); got != tt.want {
				t.Fatalf("ClientIP = %s; want %s", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:5"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := ClientIP(r, nil).String(); got != "10.0.0.1" {
		t.Fatalf("no trusted proxies: %s; want the peer", got)
	}
}

// p2c sends less to a backend with more in flight (a slow one).
func TestP2CAvoidsLoadedBackend(t *testing.T) {
	_, set := newSet(t, Options{}, backends(4))
	var held []Ticket
	for range 20 { // b00 is slow: 20 requests pile up on it
		tk, _ := set.Backends[0].Acquire()
		held = append(held, tk)
	}
	counts := pickN(t, newP2C(set, BuildOptions{Rand: seeded(3)}), 4000)
	// b00 only wins when both choices are b00, which p2c never draws.
	if counts["b00"] != 0 {
		t.Fatalf("loaded backend got %d of 4000 picks: %v", counts["b00"], counts)
	}
	for _, tk := range held {
		tk.Done(Success)
	}
}

func TestLeastResponseTime(t *testing.T) {
	clk := &clock{t: time.Unix(1_000_000, 0)}
	_, set := newSet(t, Options{Now: clk.Now}, backends(3))
	p := newLeastResponseTime(set, BuildOptions{Rand: seeded(4)})
	if _, err := p.Pick(req, Skip{}); err != ErrDecline {
		t.Fatalf("no data anywhere: err %v; want ErrDecline so the chain falls back", err)
	}
	sample := func(b *Backend, d time.Duration) {
		tk, _ := b.Acquire()
		clk.Add(d)
		tk.Done(Success)
	}
	sample(set.Backends[0], 5*time.Millisecond)
	sample(set.Backends[1], 50*time.Millisecond)
	// b02 has no data: it gets one trial while nothing of it is in flight.
	b, _ := p.Pick(req, Skip{})
	if b.ID != "b02" {
		t.Fatalf("backend without data not tried: picked %s", b.ID)
	}
	tk, _ := b.Acquire() // the trial is in flight: no flood of b02
	if b, _ := p.Pick(req, Skip{}); b.ID != "b00" {
		t.Fatalf("picked %s; want the fastest, b00", b.ID)
	}
	clk.Add(200 * time.Millisecond)
	tk.Done(Success)
	counts := pickN(t, p, 100)
	if counts["b00"] != 100 {
		t.Fatalf("fast backend got %d of 100 picks: %v", counts["b00"], counts)
	}
	// Data older than three decay constants counts as none: a backend
	// avoided for being slow is tried again rather than starved.
	clk.Add(31 * time.Second)
	sample(set.Backends[0], 5*time.Millisecond) // b00 fresh, b01 and b02 stale
	if b, _ := p.Pick(req, Skip{}); b.ID == "b00" {
		t.Fatal("stale backends not given a trial")
	}
	if set.Backends[0].Latency() < 4*time.Millisecond || set.Backends[0].Latency() > 6*time.Millisecond {
		t.Fatalf("EWMA of b00 = %v; want about 5ms", set.Backends[0].Latency())
	}
}

func TestChainFallback(t *testing.T) {
	_, set := newSet(t, Options{}, backends(3))
	var falls []string
	c, err := NewChain([]string{"header_hash", "least_response_time"}, set, BuildOptions{HashHeader: "X-User"},
		func(from, to string) { falls = append(falls, from+">"+to) })
	if err != nil {
		t.Fatal(err)
	}
	// No X-User header and no latency data: both decline, round_robin picks.
	if _, err := c.Pick(req, Skip{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(falls, " "); got != "header_hash>least_response_time least_response_time>round_robin" {
		t.Fatalf("fallbacks %q", got)
	}
	if _, err := NewChain([]string{"fastest"}, set, BuildOptions{}, nil); err == nil || !strings.Contains(err.Error(), `unknown policy "fastest"`) {
		t.Fatalf("unknown policy: err %v", err)
	}
}

func TestSkipDrainAndHealth(t *testing.T) {
	bs := backends(4)
	bs[2].Health = discovery.Draining
	bs[3].Health = discovery.Critical
	r, set := newSet(t, Options{WarningUsable: true}, bs)
	if !r.Drain("b01", true) || r.Drain("nope", true) {
		t.Fatal("Drain: known id refused or unknown id accepted")
	}
	for _, tt := range []struct {
		id         string
		keep, take bool
	}{{"b00", true, true}, {"b01", true, false}, {"b02", true, false}, {"b03", false, false}} {
		b := set.Lookup(tt.id)
		if b.CanKeep() != tt.keep || b.CanTake() != tt.take {
			t.Errorf("%s: CanKeep %v CanTake %v; want %v %v", tt.id, b.CanKeep(), b.CanTake(), tt.keep, tt.take)
		}
	}
	// Drains survive a new snapshot.
	set = r.Update(discovery.Snapshot{Service: "web", Backends: bs})
	if set.Lookup("b01").CanTake() {
		t.Fatal("drain lost on Update")
	}
	rr := newRoundRobin(set, BuildOptions{})
	var skip Skip
	skip.Add(set.Lookup("b00"))
	if _, err := rr.Pick(req, skip); err != ErrNoBackend {
		t.Fatalf("only usable backend skipped: err %v; want ErrNoBackend", err)
	}
}

func TestPanicMode(t *testing.T) {
	bs := backends(4)
	bs[0].Health, bs[1].Health, bs[2].Health = discovery.Critical, discovery.Critical, discovery.Critical
	_, set := newSet(t, Options{PanicThreshold: 0.5}, bs)
	if !set.Panic || !set.Lookup("b00").CanKeep() || !set.Lookup("b00").CanTake() {
		t.Fatal("1 of 4 healthy: want panic mode with every backend usable")
	}
	bs[0].Health = discovery.Passing
	_, set = newSet(t, Options{PanicThreshold: 0.5}, bs)
	if set.Panic || set.Lookup("b01").CanKeep() {
		t.Fatal("2 of 4 healthy: want health trusted")
	}
}

func TestSlowStartRamps(t *testing.T) {
	clk := &clock{t: time.Unix(1_000_000, 0)}
	bs := backends(2)
	r, _ := newSet(t, Options{Now: clk.Now, SlowStart: 10 * time.Second}, bs[:1])
	set := r.Update(discovery.Snapshot{Service: "web", Backends: bs}) // b01 joins
	chain, _ := NewChain([]string{"round_robin"}, set, BuildOptions{Rand: seeded(5)}, nil)
	share := func() float64 {
		n := 0
		for range 10_000 {
			if b, _ := chain.Pick(req, Skip{}); b.ID == "b01" {
				n++
			}
		}
		return float64(n) / 10_000
	}
	// A ramping backend keeps a pick with probability f (the elapsed share
	// of the window). Under round robin a refused pick hands the slot on,
	// so its share is f/(1+f) rather than f/2: about 17% at f=0.2, 37.5% at
	// f=0.6, and 50% once ramped.
	clk.Add(2 * time.Second)
	early := share()
	if early < 0.13 || early > 0.21 {
		t.Fatalf("20%% into slow start the new backend got %.1f%% of picks; want about 17%%", early*100)
	}
	clk.Add(4 * time.Second)
	if mid := share(); mid < 0.33 || mid > 0.42 {
		t.Fatalf("60%% into slow start it got %.1f%%; want about 37.5%%", mid*100)
	}
	clk.Add(10 * time.Second)
	if s := share(); s < 0.45 || s > 0.55 {
		t.Fatalf("after slow start it got %.1f%%; want 50%%", s*100)
	}
}

func TestBreaker(t *testing.T) {
	var mu sync.Mutex
	var changes []string
	opts := Options{
		Breaker: BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 30 * time.Millisecond},
		OnBreakerChange: func(id string, from, to BreakerState) {
			mu.Lock()
			changes = append(changes, id+":"+from.String()+">"+to.String())
			mu.Unlock()
		},
	}
	r, set := newSet(t, opts, backends(2))
	b := set.Lookup("b00")
	for range 3 {
		tk, err := b.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		tk.Done(Failure)
	}
	if b.Breaker() != Open || b.CanTake() {
		t.Fatalf("after 3 failures: breaker %v, CanTake %v; want open and excluded", b.Breaker(), b.CanTake())
	}
	rr := newRoundRobin(set, BuildOptions{})
	for range 10 {
		if p, _ := rr.Pick(req, Skip{}); p.ID == "b00" {
			t.Fatal("open breaker's backend picked")
		}
	}
	// State survives a snapshot change with the same ID.
	set = r.Update(discovery.Snapshot{Service: "web", Backends: backends(2)})
	b = set.Lookup("b00")
	if b.Breaker() != Open {
		t.Fatal("breaker state lost on Update")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.CanTake() {
		if time.Now().After(deadline) {
			t.Fatal("open breaker never let a probe through")
		}
		time.Sleep(5 * time.Millisecond)
	}
	probe, err := b.Acquire()
	if err != nil {
		t.Fatalf("half-open probe refused: %v", err)
	}
	if _, err := b.Acquire(); err != ErrBreakerOpen {
		t.Fatalf("second request while half-open: %v; want ErrBreakerOpen", err)
	}
	probe.Done(Success)
	if b.Breaker() != Closed {
		t.Fatalf("after a good probe: %v; want closed", b.Breaker())
	}
	// Ignored outcomes (client gone) never trip it.
	for range 10 {
		tk, _ := b.Acquire()
		tk.Done(Ignored)
	}
	if b.Breaker() != Closed {
		t.Fatal("client cancellations tripped the breaker")
	}
	mu.Lock()
	got := strings.Join(changes, " ")
	mu.Unlock()
	if got != "b00:closed>open b00:open>half-open b00:half-open>closed" {
		t.Fatalf("state changes %q", got)
	}
	// Dropped when the backend leaves, fresh when it returns.
	r.Update(discovery.Snapshot{Service: "web", Backends: backends(1)})
	set = r.Update(discovery.Snapshot{Service: "web", Backends: backends(2)})
	if set.Lookup("b01").InFlight() != 0 {
		t.Fatal("state of a backend that left was kept")
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	_, set := newSet(t, Options{Breaker: BreakerSettings{FailureRatio: 0.5, MinRequests: 10, OpenTimeout: time.Hour}}, backends(1))
	b := set.Backends[0]
	for i := range 9 { // 9 requests, 5 failures: not enough requests yet
		tk, _ := b.Acquire()
		if i%2 == 0 {
			tk.Done(Failure)
		} else {
			tk.Done(Success)
		}
	}
	if b.Breaker() != Closed {
		t.Fatal("tripped below MinRequests")
	}
	tk, _ := b.Acquire()
	tk.Done(Failure) // 10 requests, 6 failures: 60% ≥ 50%
	if b.Breaker() != Open {
		t.Fatal("not tripped at 60% failures over 10 requests")
	}
}

// Pick allocates nothing, for every algorithm.
func TestPickAllocatesNothing(t *testing.T) {
	_, set := newSet(t, Options{}, backends(8))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User", "u1")
	r.Header.Set("Cookie", "sid=abc")
	for name, build := range Builders {
		p := build(set, BuildOptions{HashHeader: "X-User", HashCookie: "sid"})
		if n := testing.AllocsPerRun(100, func() { _, _ = p.Pick(r, Skip{}) }); n != 0 {
			t.Errorf("%s: %v allocations per Pick", name, n)
		}
	}
	c, _ := NewChain([]string{"least_response_time", "p2c"}, set, BuildOptions{}, func(string, string) {})
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Pick(r, Skip{}) }); n != 0 {
		t.Errorf("chain: %v allocations per Pick", n)
	}
}

func TestValidatePolicy(t *testing.T) {
	if err := ValidatePolicy(nil); err == nil {
		t.Error("empty chain accepted")
	}
	if err := ValidatePolicy([]string{"p2c", "round_robin"}); err != nil {
		t.Error(err)
	}
	if err := (BreakerSettings{FailureRatio: 1.5}).Validate(); err == nil || !strings.Contains(err.Error(), "failure_ratio") {
		t.Errorf("ratio 1.5: %v", err)
	}
}
