package policy

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
)

func TestLeastSessionsPrefersFewerPerWeight(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		counted []int64 // live sessions across replicas, by backend
		local   []int   // this replica's new sessions since the count
		want    string  // the backend every pair containing it must pick
	}{
		{"fewest counted", nil, []int64{300, 300, 10}, nil, "b02"},
		{"own new sessions count", nil, []int64{100, 100, 100}, []int{0, 0, 50}, ""},
		{"own new sessions tip it", nil, []int64{100, 100, 100}, []int{5, 5, 0}, "b02"},
		{"per unit of weight", []int{1, 1, 4}, []int64{100, 100, 300}, nil, "b02"},
		{"weight loses when over its share", []int{1, 1, 4}, []int64{100, 100, 500}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, set := newSet(t, Options{}, backends(3, tt.weights...))
			count(r, tt.counted...)
			for i, n := range tt.local {
				for range n {
					set.Backends[i].SessionStarted()
				}
			}
			p := Builders["least_sessions"](set, BuildOptions{Rand: seeded(3)})
			got := pickN(t, p, 3000)
			if tt.want != "" {
				// b's pairs are 2 of 3 (drawn in proportion to weight): it
				// wins each, so its share is its chance of being drawn.
				if got[tt.want] < 3000*55/100 {
					t.Fatalf("picks %v: %s should win every pair it is in", got, tt.want)
				}
				return
			}
			if got["b02"] > 3000/4 {
				t.Fatalf("picks %v: b02 has more than its share and should lose its pairs", got)
			}
		})
	}
}

// A count applied keeps only the new sessions started after its refresh
// began: earlier ones are in the count, or were never stored (no load).
func TestSessionCountKeepsNewerLocalSessions(t *testing.T) {
	r, set := newSet(t, Options{}, backends(2))
	b := set.Backends[0]
	for range 5 {
		b.SessionStarted()
	}
	c := r.BeginSessionCount()
	for range 3 { // picked while the store was being read
		b.SessionStarted()
	}
	at := time.Unix(1_700_000_000, 0)
	c.Apply(map[string]int64{"b00": 40}, at)
	if got := b.Sessions(); got != 43 {
		t.Fatalf("b00: %d sessions after the count; want 40 counted + 3 since it began", got)
	}
	if got := set.Backends[1].Sessions(); got != 0 {
		t.Fatalf("b01 missing from the counts: %d; want 0", got)
	}
	if !r.SessionsCountedAt().Equal(at) {
		t.Fatalf("counted at %v; want %v", r.SessionsCountedAt(), at)
	}
	// Counts live in the registry: a new snapshot keeps them.
	set = r.Update(snapshot(backends(3)))
	if got := set.Lookup("b00").Sessions(); got != 43 {
		t.Fatalf("after an update: %d; want 43", got)
	}
}

func TestShare(t *testing.T) {
	bs := backends(4, 1, 1, 2, 4)
	bs[3].Health = discovery.Critical
	_, set := newSet(t, Options{}, bs)
	want := []float64{0.25, 0.25, 0.5, 0}
	for i, b := range set.Backends {
		if got := set.Share(b); math.Abs(got-want[i]) > 1e-9 {
			t.Errorf("%s: share %v; want %v", b.ID, got, want[i])
		}
	}
}

// count applies a session count to r: counts[i] for backend i.
func count(r *Registry, counts ...int64) {
	c := r.BeginSessionCount()
	m := map[string]int64{}
	for i, n := range counts {
		m[fmt.Sprintf("b%02d", i)] = n
	}
	c.Apply(m, time.Now())
}

// TestLeastSessionsScaleOut simulates the two situations on three
// replicas that each see their own new sessions at once and the others'
// through a count refreshed once a second (staggered by a third of a
// second), with new sessions arriving at 300/s round robin over the
// replicas:
//
//   - scale-out: 3 backends hold 300 live sessions each, a 4th joins, 1,200
//     new sessions arrive;
//   - uneven expiry: 4 backends hold 300 each, all of b00's end, 600 new
//     sessions arrive.
//
// It prints each backend's live sessions afterwards and the longest run of
// consecutive new sessions to one backend, for p2c (the default, which
// sees no in-flight load here and draws in proportion to weight),
// least_sessions, and two designs it was measured against: the strict
// minimum and a draw in proportion to each backend's deficit under its
// weighted share. least_sessions must bring the 4th within 10% of the
// others' mean without a run longer than 30 (a tenth of one refresh interval of
// arrivals, which is how long the herding designs run).
func TestLeastSessionsScaleOut(t *testing.T) {
	pickers := []struct {
		name  string
		build Builder
	}{
		{"p2c", Builders["p2c"]},
		{"least_sessions", Builders["least_sessions"]},
		{"strict minimum", newStrictMinimum},
		{"deficit draw", newDeficitDraw},
	}
	type scenario struct {
		name    string
		before  []int64 // live sessions per backend when the new ones start
		joining bool    // the last backend joins just before
		arrive  int
	}
	scenarios := []scenario{
		{"scale-out", []int64{300, 300, 300, 0}, true, 1200},
		{"uneven expiry", []int64{0, 300, 300, 300}, false, 600},
	}
	for _, sc := range scenarios {
		for _, pk := range pickers {
			t.Run(sc.name+"/"+pk.name, func(t *testing.T) {
				final, run := simulateReplicas(t, pk.build, sc.before, sc.joining, sc.arrive)
				t.Logf("%-14s %-15s live sessions %v, longest run %d", sc.name, pk.name, final, run)
				if pk.name != "least_sessions" {
					return
				}
				first := 3
				if !sc.joining {
					first = 0
				}
				var others float64
				for i, n := range final {
					if i != first {
						others += float64(n) / 3
					}
				}
				if sc.joining && math.Abs(float64(final[first])/others-1) > 0.10 {
					t.Errorf("the new backend holds %d, the others %.0f on average: more than 10%% apart", final[first], others)
				}
				if !sc.joining && float64(final[first]) < 0.6*others {
					t.Errorf("the emptied backend refilled to %d only, the others hold %.0f", final[first], others)
				}
				if run > 30 {
					t.Errorf("%d new sessions in a row went to one backend: herding", run)
				}
			})
		}
	}
}

// simulateReplicas runs a scenario of TestLeastSessionsScaleOut and
// returns the live sessions per backend and the longest run.
func simulateReplicas(t *testing.T, build Builder, before []int64, joining bool, arrive int) ([]int64, int) {
	t.Helper()
	const replicas, every = 3, time.Second / 300
	n := len(before)
	truth := map[string]int64{}
	for i, c := range before {
		truth[fmt.Sprintf("b%02d", i)] = c
	}
	var regs [replicas]*Registry
	var pickers [replicas]Picker
	for k := range regs {
		first := n
		if joining {
			first = n - 1
		}
		regs[k], _ = newSet(t, Options{}, backends(first))
		regs[k].BeginSessionCount().Apply(truth, time.Time{})
		set := regs[k].Update(snapshot(backends(n)))
		pickers[k] = build(set, BuildOptions{Rand: seeded(uint64(10 + k))})
	}
	var elapsed time.Duration
	next := [replicas]time.Duration{0, time.Second / 3, 2 * time.Second / 3}
	run, longest, last := 0, 0, ""
	for i := range arrive {
		for k := range regs { // refreshes due by now
			if elapsed >= next[k] {
				regs[k].BeginSessionCount().Apply(truth, time.Time{})
				next[k] += time.Second
			}
		}
		b, err := pickers[i%replicas].Pick(nil, Skip{})
		if err != nil {
			t.Fatal(err)
		}
		b.SessionStarted()
		truth[b.ID]++
		if b.ID == last {
			run++
		} else {
			run, last = 1, b.ID
		}
		longest = max(longest, run)
		elapsed += every
	}
	final := make([]int64, n)
	for i := range final {
		final[i] = truth[fmt.Sprintf("b%02d", i)]
	}
	return final, longest
}

// strictMinimum and deficitDraw are the designs least_sessions was
// measured against (TestLeastSessionsScaleOut).

// strictMinimum takes the backend with the fewest live sessions per unit
// of weight (the first on ties).
type strictMinimum struct{ set *Set }

func newStrictMinimum(set *Set, _ BuildOptions) Picker { return &strictMinimum{set} }

func (p *strictMinimum) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	var best *Backend
	for _, b := range p.set.Backends {
		if usable(b, &skip) && (best == nil || sessions(b.st)*best.weight() < sessions(best.st)*b.weight()) {
			best = b
		}
	}
	if best == nil {
		return nil, ErrNoBackend
	}
	return best, nil
}

// deficitDraw draws a backend in proportion to how far it is below its
// weighted share of the sessions (the next one included); uniformly when
// none is.
type deficitDraw struct {
	set  *Set
	rand func() uint64
}

func newDeficitDraw(set *Set, opts BuildOptions) Picker {
	return &deficitDraw{set, randFunc(opts)}
}

func (p *deficitDraw) Pick(_ *http.Request, skip Skip) (*Backend, error) {
	var total, weights float64
	for _, b := range p.set.Backends {
		if usable(b, &skip) {
			total += float64(sessions(b.st))
			weights += float64(b.weight())
		}
	}
	x := p.rand()
	var pick *Backend
	var sum float64
	for _, b := range p.set.Backends {
		if !usable(b, &skip) {
			continue
		}
		d := max((total+1)*float64(b.weight())/weights-float64(sessions(b.st)), 0)
		sum += d
		if d > 0 && unit(splitmix(&x))*sum < d {
			pick = b
		}
	}
	if pick == nil {
		return newRandom(p.set, BuildOptions{Rand: p.rand}).Pick(nil, skip)
	}
	return pick, nil
}
