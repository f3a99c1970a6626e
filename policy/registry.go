package policy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/discovery"
)

// Options configure a Registry. Zero fields take the defaults in brackets.
type Options struct {
	Breaker BreakerSettings
	// SlowStart is the window over which a backend that becomes usable
	// again (new, back from critical or draining, undrained, or its breaker
	// closed again) ramps up to its full share of new sessions [0: off].
	SlowStart time.Duration
	// WarningUsable lets Warning backends keep and take sessions [false;
	// the gateway passes true by default].
	WarningUsable bool
	// PanicThreshold: when fewer than this fraction of a snapshot's
	// backends are healthy (passing, or warning when usable), health is not
	// trusted and every backend but draining or drained ones may serve, as
	// Envoy's panic threshold does. Mass failures of checks are more often
	// the checks' fault (an agent restart starts every check critical) than
	// the backends'; real failures still meet retries and breakers [0: off].
	PanicThreshold float64
	// LatencyDecay is the time constant τ of the latency EWMA [10s].
	LatencyDecay time.Duration
	// Now is the clock of slow start and latency statistics [time.Now's
	// monotonic reading]. It must return times after 1970. The breakers'
	// timeouts always run on the real clock (gobreaker has no other).
	Now func() time.Time
	// OnBreakerChange is told of every breaker state change. It runs under
	// that breaker's mutex, on a request goroutine: log and count only.
	OnBreakerChange func(backendID string, from, to BreakerState)
}

// Registry keeps the long-lived state of one service's backends, keyed by
// backend ID. It is safe for concurrent use: Update is called from the
// discovery goroutine, Drain from the admin API, Current from anywhere.
type Registry struct {
	service string
	opts    atomic.Pointer[Options] // swapped whole by Reconfigure

	mu      sync.Mutex // guards states and first
	states  map[string]*state
	first   bool // no Update yet: backends of the first snapshot do not ramp
	current atomic.Pointer[Set]

	// countedAt is the wall clock (unix nanos) of the last session count
	// applied (see SessionCount); 0 = none yet.
	countedAt atomic.Int64

	hashMu sync.Mutex
	hash   *hashTable // last consistent-hash table, reused while the IDs stay
}

// NewRegistry returns an empty registry for service. opts.Breaker should
// have passed Validate.
func NewRegistry(service string, opts Options) *Registry {
	r := &Registry{service: service, states: map[string]*state{}, first: true}
	r.opts.Store(opts.withDefaults())
	return r
}

func (o Options) withDefaults() *Options {
	o.Breaker = o.Breaker.withDefaults()
	if o.LatencyDecay <= 0 {
		o.LatencyDecay = 10 * time.Second
	}
	return &o
}

// Reconfigure applies new options (a configuration reload) and keeps every
// backend's state: in-flight counts, latency, drains, slow start. Breakers
// keep their state unless their settings changed: then each backend gets a
// new, closed breaker with the new settings (gobreaker's settings are
// fixed per breaker). Health verdicts (warning_usable, panic_threshold)
// apply from the next Update. It reports whether the breakers were
// replaced.
func (r *Registry) Reconfigure(opts Options) (breakersReset bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := opts.withDefaults()
	prev := r.opts.Swap(next)
	if next.Breaker == prev.Breaker {
		return false
	}
	for _, st := range r.states {
		st.breaker.Store(r.newBreaker(st))
		st.bstate.Store(int32(Closed))
		st.bsince.Store(time.Now().UnixNano())
	}
	return true
}

// options are the registry's current options.
func (r *Registry) options() *Options { return r.opts.Load() }

// Set is the immutable list of one snapshot's backends. Build pickers and
// chains from it; it is safe for concurrent use.
type Set struct {
	Service  string
	Backends []*Backend // sorted by ID, IDs unique
	Stale    bool
	// Panic is set when too few backends are healthy to trust health (see
	// Options.PanicThreshold).
	Panic bool

	byID map[string]*Backend
	reg  *Registry
	hash atomic.Pointer[hashTable] // built on first use by a hash picker
}

// Lookup returns the backend with id, or nil. O(1), no allocation.
func (s *Set) Lookup(id string) *Backend { return s.byID[id] }

// Current is the Set of the last Update, nil before the first.
func (r *Registry) Current() *Set { return r.current.Load() }

// Update binds a snapshot's backends to their state (new IDs get fresh
// state, IDs that left lose theirs) and returns the Set of this snapshot,
// which also becomes Current. Backends are sorted by ID; a duplicate ID
// keeps its first entry.
func (r *Registry) Update(s discovery.Snapshot) *Set {
	dbs := s.Backends
	byID := func(a, b discovery.Backend) int { return strings.Compare(a.ID, b.ID) }
	if !slices.IsSortedFunc(dbs, byID) {
		dbs = slices.Clone(dbs)
		slices.SortStableFunc(dbs, byID)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	set := &Set{Service: s.Service, Stale: s.Stale, reg: r,
		Backends: make([]*Backend, 0, len(dbs)), byID: make(map[string]*Backend, len(dbs))}
	healthy := 0
	for _, db := range dbs {
		if r.takeHealth(db.Health) {
			healthy++
		}
	}
	n := len(dbs)
	set.Panic = n > 0 && healthy < n && float64(healthy) < r.options().PanicThreshold*float64(n)

	live := make(map[string]*state, n)
	for _, db := range dbs {
		if _, dup := live[db.ID]; dup {
			continue
		}
		take := r.takeHealth(db.Health)
		st, ok := r.states[db.ID]
		if !ok {
			st = &state{id: db.ID, reg: r}
			st.bsince.Store(time.Now().UnixNano())
			st.breaker.Store(r.newBreaker(st))
			if !r.first && take {
				r.ramp(st) // a new backend ramps up too
			}
		} else if !st.takeHealth && take {
			r.ramp(st) // back from critical or draining
		}
		st.takeHealth = take
		live[db.ID] = st
		b := &Backend{Backend: db, st: st}
		if set.Panic {
			b.keepOK, b.takeOK = true, db.Health != discovery.Draining
		} else {
			b.keepOK, b.takeOK = take || db.Health == discovery.Draining, take
		}
		set.Backends = append(set.Backends, b)
		set.byID[db.ID] = b
	}
	r.states = live
	r.first = false
	r.current.Store(set)
	return set
}

// takeHealth reports whether health h lets a backend take new sessions.
func (r *Registry) takeHealth(h discovery.Health) bool {
	return h == discovery.Passing || (h == discovery.Warning && r.options().WarningUsable)
}

// ramp starts st's slow start now (when slow start is on).
func (r *Registry) ramp(st *state) {
	if r.options().SlowStart > 0 {
		st.upSince.Store(r.now())
	}
}

// Drain marks backend id drained (or not): a drained backend keeps its
// sessions and gets no new ones. It survives snapshot changes, not the
// backend leaving. Undraining starts slow start. It returns false when id
// is unknown.
func (r *Registry) Drain(id string, drained bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.states[id]
	if ok && st.drained.Swap(drained) && !drained && st.takeHealth {
		r.ramp(st)
	}
	return ok
}

// hashTable returns the consistent-hash table of s, building it on first
// use. A table depends only on the backend IDs, so the last one is reused
// while they stay the same: health flaps cost nothing.
func (s *Set) hashTable() *hashTable {
	if t := s.hash.Load(); t != nil {
		return t
	}
	if s.reg == nil {
		t := newHashTable(s.Backends)
		s.hash.Store(t)
		return t
	}
	r := s.reg
	r.hashMu.Lock()
	defer r.hashMu.Unlock()
	if t := s.hash.Load(); t != nil {
		return t
	}
	if r.hash == nil || !r.hash.sameIDs(s.Backends) {
		r.hash = newHashTable(s.Backends)
	}
	s.hash.Store(r.hash)
	return r.hash
}
