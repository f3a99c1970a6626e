package policy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/latchgw/latch/discovery"
)

// BreakerSettings configure a backend's circuit breaker. Zero fields take
// the defaults in brackets.
type BreakerSettings struct {
	ConsecutiveFailures uint32        // trip after this many failures in a row [5]
	FailureRatio        float64       // if > 0: trip when failures/requests >= ratio...
	MinRequests         uint32        // ...over at least this many requests in Interval [20]
	Interval            time.Duration // closed-state counting window [10s]
	OpenTimeout         time.Duration // open → half-open after this [10s]
	HalfOpenRequests    uint32        // probes allowed while half-open [1]
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.MinRequests == 0 {
		s.MinRequests = 20
	}
	if s.Interval == 0 {
		s.Interval = 10 * time.Second
	}
	if s.OpenTimeout == 0 {
		s.OpenTimeout = 10 * time.Second
	}
	if s.HalfOpenRequests == 0 {
		s.HalfOpenRequests = 1
	}
	return s
}

// Validate names the faulty field.
func (s BreakerSettings) Validate() error {
	switch {
	case s.FailureRatio < 0 || s.FailureRatio > 1:
		return fmt.Errorf("failure_ratio: %v is not in [0, 1]", s.FailureRatio)
	case s.Interval < 0:
		return fmt.Errorf("interval: must not be negative")
	case s.OpenTimeout < 0:
		return fmt.Errorf("open_timeout: must not be negative")
	}
	return nil
}

// Options configure a Registry. Zero fields take the defaults in brackets.
type Options struct {
	Breaker   BreakerSettings
	SlowStart time.Duration // ramp-up window of a recovered backend [0: off]
	// WarningUsable lets Warning backends take new sessions.
	WarningUsable bool
	// PanicThreshold: when fewer than this fraction of a snapshot's
	// backends are healthy (passing, or warning when usable), health is not
	// trusted and every backend but drained ones may serve, as Envoy's
	// panic threshold does. Mass failures of checks are more often the
	// checks' fault (an agent restart starts every check critical) than
	// the backends'; real failures still meet retries and breakers. 0: off.
	PanicThreshold float64
	LatencyDecay   time.Duration    // EWMA time constant [10s]
	Now            func() time.Time // [time.Now]
	// OnBreakerChange is called under the breaker's lock: log and count only.
	OnBreakerChange func(backendID string, from, to BreakerState)
}

// Registry keeps the long-lived state of one service's backends, keyed by
// backend ID. Update runs on the discovery goroutine; everything else is
// safe from any goroutine.
type Registry struct {
	service string
	opts    Options

	mu      sync.Mutex // guards states and first
	states  map[string]*state
	first   bool
	current atomic.Pointer[Set]
}

// NewRegistry returns an empty registry for service.
func NewRegistry(service string, opts Options) *Registry {
	opts.Breaker = opts.Breaker.withDefaults()
	if opts.LatencyDecay <= 0 {
		opts.LatencyDecay = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Registry{service: service, opts: opts, states: map[string]*state{}, first: true}
}

func (r *Registry) now() int64 { return r.opts.Now().UnixNano() }

// Set is the immutable list of one snapshot's backends.
type Set struct {
	Service  string
	Backends []*Backend // sorted by ID
	Stale    bool
	// Panic is set when too few backends are healthy to trust health (see
	// Options.PanicThreshold).
	Panic bool
	byID  map[string]*Backend
}

// Lookup returns the backend with id, or nil.
func (s *Set) Lookup(id string) *Backend { return s.byID[id] }

// Current is the Set of the last Update, nil before the first.
func (r *Registry) Current() *Set { return r.current.Load() }

// Update binds a snapshot's backends to their state (new IDs get fresh
// state, IDs that left lose theirs) and returns the Set of this snapshot.
func (r *Registry) Update(s discovery.Snapshot) *Set {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	set := &Set{Service: s.Service, Stale: s.Stale, Backends: make([]*Backend, 0, len(s.Backends)),
		byID: make(map[string]*Backend, len(s.Backends))}
	live := make(map[string]*state, len(s.Backends))
	healthy := 0
	for _, db := range s.Backends {
		if db.Health == discovery.Passing || (db.Health == discovery.Warning && r.opts.WarningUsable) {
			healthy++
		}
	}
	n := len(s.Backends)
	set.Panic = n > 0 && healthy < n && float64(healthy) < r.opts.PanicThreshold*float64(n)
	for _, db := range s.Backends {
		st, ok := r.states[db.ID]
		if !ok {
			st = r.newState(db.ID)
			st.health = db.Health
			if !r.first && db.Health != discovery.Critical {
				st.upSince.Store(now) // a new backend ramps up too
			}
		} else if st.health == discovery.Critical && db.Health != discovery.Critical {
			st.upSince.Store(now)
		}
		st.health = db.Health
		live[db.ID] = st
		b := &Backend{Backend: db, st: st, warnOK: r.opts.WarningUsable, panic: set.Panic}
		set.Backends = append(set.Backends, b)
		set.byID[db.ID] = b
	}
	r.states = live
	r.first = false
	r.current.Store(set)
	return set
}

// Drain marks backend id drained (or not): it keeps its sessions and gets
// no new ones. It survives snapshot changes; false when id is unknown.
func (r *Registry) Drain(id string, drained bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.states[id]
	if ok {
		st.drained.Store(drained)
	}
	return ok
}

func (r *Registry) newState(id string) *state {
	st := &state{id: id, reg: r}
	bs := r.opts.Breaker
	st.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        id,
		MaxRequests: bs.HalfOpenRequests,
		Interval:    bs.Interval,
		Timeout:     bs.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if bs.FailureRatio > 0 {
				return c.Requests >= bs.MinRequests &&
					float64(c.TotalFailures)/float64(c.Requests) >= bs.FailureRatio
			}
			return c.ConsecutiveFailures >= bs.ConsecutiveFailures
		},
		IsExcluded: func(err error) bool { return err == errIgnored },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			f, t := fromGobreaker(from), fromGobreaker(to)
			if t == Open {
				st.openUntil.Store(r.now() + int64(bs.OpenTimeout))
			}
			if t == Closed && f == HalfOpen {
				st.upSince.Store(r.now()) // recovered: ramp up again
			}
			st.bstate.Store(int32(t))
			if r.opts.OnBreakerChange != nil {
				r.opts.OnBreakerChange(id, f, t)
			}
		},
	})
	return st
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
