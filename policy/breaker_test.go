package policy

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// changes records OnBreakerChange calls.
type changes struct {
	mu  sync.Mutex
	got []string
}

func (c *changes) record(id string, from, to BreakerState) {
	c.mu.Lock()
	c.got = append(c.got, id+":"+from.String()+">"+to.String())
	c.mu.Unlock()
}

func (c *changes) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.got, " ")
}

// An open breaker takes its backend out of every picker, for new and
// pinned sessions alike, and refuses Acquire. (A one-hour timeout: nothing
// here depends on timing.)
func TestBreakerOpenExcludes(t *testing.T) {
	var ch changes
	_, set := newSet(t, Options{
		Breaker:         BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: time.Hour},
		OnBreakerChange: ch.record,
	}, backends(2))
	b := set.Lookup("b00")
	appeared := b.BreakerSince()
	if time.Since(appeared) > time.Minute || appeared.After(time.Now()) {
		t.Fatalf("BreakerSince of a new backend %v; want about now (its appearance)", appeared)
	}
	for _, o := range []Outcome{Failure, Failure, Success, Failure, Failure} { // the success resets the run
		request(t, b, o)
	}
	if b.Breaker() != Closed {
		t.Fatal("tripped before 3 consecutive failures")
	}
	request(t, b, Failure)
	if b.Breaker() != Open || b.CanTake() || b.CanKeep() {
		t.Fatalf("after 3 failures in a row: %v, CanTake %v, CanKeep %v; want open, excluded",
			b.Breaker(), b.CanTake(), b.CanKeep())
	}
	if !b.BreakerSince().After(appeared) {
		t.Fatalf("BreakerSince %v did not move when the breaker opened (appeared %v)", b.BreakerSince(), appeared)
	}
	if _, err := b.Acquire(); err != ErrBreakerOpen {
		t.Fatalf("Acquire on an open breaker: %v; want ErrBreakerOpen", err)
	}
	if got := ch.String(); got != "b00:closed>open" {
		t.Fatalf("OnBreakerChange calls %q", got)
	}
	warm(t, set)
	for name, build := range Builders {
		p := build(set, keyedOpts)
		for range 50 {
			if got, err := p.Pick(keyed(), Skip{}); err != nil || got.ID != "b01" {
				t.Fatalf("%s picked %v (err %v) while b00's breaker is open", name, got, err)
			}
		}
	}
}

// gobreaker has no injectable clock: a 20ms open timeout, and polling
// until a deadline.
func TestBreakerRecovers(t *testing.T) {
	var ch changes
	_, set := newSet(t, Options{
		Breaker:         BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 20 * time.Millisecond},
		OnBreakerChange: ch.record,
	}, backends(2))
	b := set.Lookup("b00")
	for range 3 {
		request(t, b, Failure)
	}
	if b.Breaker() != Open || b.Recovering() {
		t.Fatalf("after 3 failures: %v, Recovering %v; want open, not recovering before its timeout", b.Breaker(), b.Recovering())
	}
	// Once OpenTimeout has passed, b00 is usable again: one probe goes
	// through (half-open), a second is refused, success closes it. It is
	// Recovering until then (issue 22: its sessions stay).
	eventually(t, "open breaker to let a probe through", b.CanTake)
	if b.Breaker() != Open || !b.CanKeep() || !b.Recovering() {
		t.Fatal("timeout passed: want still Open (nobody probed) but usable, recovering")
	}
	probe, err := b.Acquire()
	if err != nil {
		t.Fatalf("half-open probe refused: %v", err)
	}
	if b.Breaker() != HalfOpen || !b.CanTake() || !b.Recovering() {
		t.Fatalf("after the probe started: %v, CanTake %v, Recovering %v; want half-open, usable, recovering",
			b.Breaker(), b.CanTake(), b.Recovering())
	}
	if _, err := b.Acquire(); err != ErrBreakerOpen {
		t.Fatalf("second request while half-open: %v; want ErrBreakerOpen", err)
	}
	probe.Finish(Success, 0)
	if b.Breaker() != Closed || b.Recovering() {
		t.Fatalf("after a good probe: %v, Recovering %v; want closed, recovered", b.Breaker(), b.Recovering())
	}
	if got, want := ch.String(), "b00:closed>open b00:open>half-open b00:half-open>closed"; got != want {
		t.Fatalf("OnBreakerChange calls %q; want %q", got, want)
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight %d after every ticket finished", b.InFlight())
	}
}

func TestBreakerFailedProbeReopens(t *testing.T) {
	var ch changes
	_, set := newSet(t, Options{
		Breaker:         BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: 20 * time.Millisecond, HalfOpenRequests: 2},
		OnBreakerChange: ch.record,
	}, backends(1))
	b := set.Backends[0]
	request(t, b, Failure)
	eventually(t, "probe allowed", b.CanTake)
	p1, err := b.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.Acquire() // HalfOpenRequests: 2
	if err != nil {
		t.Fatalf("second of two probes refused: %v", err)
	}
	p1.Finish(Success, 0)
	p2.Finish(Failure, 0)
	if b.Breaker() != Open { // (not CanTake: 20ms may already have passed)
		t.Fatalf("failed probe: %v; want open again", b.Breaker())
	}
	if got, want := ch.String(), "b00:closed>open b00:open>half-open b00:half-open>open"; got != want {
		t.Fatalf("OnBreakerChange calls %q; want %q", got, want)
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	tests := []struct {
		name     string
		outcomes string // S success, F failure, I ignored, in order
		want     BreakerState
	}{
		{"below min requests", "FSFSFSFSF", Closed},     // 5/9 failed, but 9 < 10
		{"ratio reached", "FSFSFSFSFF", Open},           // 6/10 ≥ 0.5
		{"ratio not reached", "FSSSFSSSFSSF", Closed},   // 4/12 < 0.5
		{"ignored do not count", "FIFIFIFIFIF", Closed}, // 6 finished < 10 (11 started)
		{"consecutive count unused", "SSSSSSSSSSFFFFFFFFF", Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, set := newSet(t, Options{Breaker: BreakerSettings{
				FailureRatio: 0.5, MinRequests: 10, ConsecutiveFailures: 1, OpenTimeout: time.Hour,
			}}, backends(1))
			b := set.Backends[0]
			for _, o := range tt.outcomes {
				request(t, b, map[rune]Outcome{'S': Success, 'F': Failure, 'I': Ignored}[o])
			}
			if b.Breaker() != tt.want {
				t.Fatalf("after %s: %v; want %v", tt.outcomes, b.Breaker(), tt.want)
			}
		})
	}
}

// Ignored outcomes (the client went away) neither trip the breaker nor
// break a run of failures.
func TestBreakerIgnoresCancellations(t *testing.T) {
	_, set := newSet(t, Options{Breaker: BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: time.Hour}}, backends(1))
	b := set.Backends[0]
	for range 20 {
		request(t, b, Ignored)
	}
	if b.Breaker() != Closed || b.Latency() != 0 {
		t.Fatalf("after 20 cancellations: %v, latency %v; want closed, no data", b.Breaker(), b.Latency())
	}
	for _, o := range []Outcome{Failure, Ignored, Failure, Ignored, Failure} {
		request(t, b, o)
	}
	if b.Breaker() != Open {
		t.Fatal("3 failures interleaved with cancellations did not trip")
	}
}

// The breaker lives with the backend ID: it survives snapshots that keep
// the ID (even with a new address) and is dropped when the ID leaves.
func TestBreakerAcrossUpdates(t *testing.T) {
	r, set := newSet(t, Options{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour}}, backends(2))
	request(t, set.Lookup("b00"), Failure)
	bs := backends(2)
	bs[0].Addr = "10.9.9.9:8080"
	set = r.Update(snapshot(bs))
	if b := set.Lookup("b00"); b.Breaker() != Open || b.CanTake() {
		t.Fatal("breaker state lost on Update with the same ID")
	}
	r.Update(snapshot(backends(2)[1:])) // b00 leaves
	if r.Current().Lookup("b00") != nil {
		t.Fatal("left backend still in the set")
	}
	set = r.Update(snapshot(backends(2))) // and returns
	if b := set.Lookup("b00"); b.Breaker() != Closed || !b.CanTake() {
		t.Fatalf("returning backend kept its old breaker: %v", b.Breaker())
	}
}

func TestBreakerSettingsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    BreakerSettings
		want string // substring of the error; "" = valid
	}{
		{"zero value", BreakerSettings{}, ""},
		{"ratio", BreakerSettings{FailureRatio: 0.5, MinRequests: 10}, ""},
		{"ratio one", BreakerSettings{FailureRatio: 1}, ""},
		{"ratio above one", BreakerSettings{FailureRatio: 1.5}, "failure_ratio"},
		{"ratio negative", BreakerSettings{FailureRatio: -0.1}, "failure_ratio"},
		{"ratio NaN", BreakerSettings{FailureRatio: math.NaN()}, "failure_ratio"},
		{"negative interval", BreakerSettings{Interval: -time.Second}, "interval"},
		{"negative open timeout", BreakerSettings{OpenTimeout: -time.Second}, "open_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid settings rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v; want one naming %s", err, tt.want)
			}
		})
	}
	d := BreakerSettings{}.withDefaults()
	if d.ConsecutiveFailures != 5 || d.MinRequests != 20 || d.Interval != 10*time.Second ||
		d.OpenTimeout != 10*time.Second || d.HalfOpenRequests != 1 {
		t.Fatalf("defaults %+v", d)
	}
}

func TestBreakerStateString(t *testing.T) {
	got := []string{Closed.String(), HalfOpen.String(), Open.String(), BreakerState(9).String()}
	if want := []string{"closed", "half-open", "open", "unknown"}; !slices.Equal(got, want) {
		t.Fatalf("%q; want %q", got, want)
	}
}
