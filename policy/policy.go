// Package policy chooses backends: the balancing algorithms, the fallback
// chain over them, per-backend circuit breakers (sony/gobreaker v2) and the
// load statistics the algorithms read (in-flight requests, EWMA latency).
//
// Two paths meet here. On the state path (the discovery goroutine) a
// Registry binds each discovery.Snapshot to the long-lived state of its
// backends and returns an immutable Set; pickers and chains are built from
// that Set, with everything they need precomputed (the smooth-WRR
// schedule, the consistent-hash table). On the request path Pick only
// reads: it never locks, never allocates and never does I/O, and it is
// called from many goroutines at once. Per-backend state lives in the
// Registry keyed by the Consul service ID, so breakers and statistics
// survive snapshot changes and are dropped when a backend leaves.
//
// policy does no I/O and knows nothing of sessions: the gateway asks it for
// a backend, reports each request's Outcome through a Ticket, and decides
// what a failure is.
package policy

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

var (
	// ErrNoBackend means no backend can take the request.
	ErrNoBackend = errors.New("no usable backend")
	// ErrDecline means a picker has no opinion (no data yet, no hash key):
	// the chain moves on to the next picker.
	ErrDecline = errors.New("picker declined")
	// ErrBreakerOpen is returned by Acquire when the backend's breaker
	// refuses the request.
	ErrBreakerOpen = errors.New("circuit breaker open")
)

// Picker chooses a backend for a NEW session among the backends of its Set
// that CanTake() and are not in skip.
//
// Pick is called concurrently from many request goroutines; it must not
// block, lock or allocate. It returns ErrDecline when it has no opinion and
// ErrNoBackend when no backend it may return is usable.
type Picker interface {
	Pick(r *http.Request, skip Skip) (*Backend, error)
}

// BuildOptions configure the pickers of one route.
type BuildOptions struct {
	HashHeader     string         // header_hash: the header whose value is the key
	HashCookie     string         // cookie_hash: the cookie whose value is the key
	TrustedProxies []netip.Prefix // ip_hash: peers whose X-Forwarded-For is believed
	// Rand is the random source of the pickers (random starts, tie breaks,
	// p2c's choices, slow start). nil: math/rand/v2. It must be safe for
	// concurrent use.
	Rand func() uint64
}

// Builder builds a picker over a Set. It runs on the state path and may
// take its time; the picker it returns must honour Picker's contract.
type Builder func(set *Set, opts BuildOptions) Picker

// Builders maps the policy names a config may use to their builders. It is
// a plain map, read-only after package initialisation.
var Builders = map[string]Builder{
	"round_robin":          newRoundRobin,
	"weighted_round_robin": newWeightedRoundRobin,
	"least_connections":    newLeastConnections,
	"least_response_time":  newLeastResponseTime,
	"random":               newRandom,
	"p2c":                  newP2C,
	"least_sessions":       newLeastSessions,
	"ip_hash":              newIPHash,
	"header_hash":          newHeaderHash,
	"cookie_hash":          newCookieHash,
}

// DefaultPolicy is the chain of a route that names none.
var DefaultPolicy = []string{"p2c"}

// ValidatePolicy checks a chain's names without building anything; the
// error names the first unknown policy.
func ValidatePolicy(names []string) error {
	if len(names) == 0 {
		return errors.New("empty policy chain")
	}
	for _, n := range names {
		if _, ok := Builders[n]; !ok {
			known := slices.Sorted(maps.Keys(Builders))
			return fmt.Errorf("unknown policy %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return nil
}
