// Package policy chooses backends: the balancing algorithms, the fallback
// chain over them, per-backend circuit breakers (sony/gobreaker v2) and the
// load statistics the algorithms read (in-flight requests, EWMA latency).
//
// Pickers are built from an immutable Set when a snapshot changes (the
// state path) and only read on the request path: Pick never locks, never
// allocates and never does I/O. Per-backend state lives in a Registry keyed
// by the Consul service ID, so breakers and statistics survive snapshot
// changes and are dropped when a backend leaves.
package policy

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
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
// block, lock or allocate. It returns ErrDecline or ErrNoBackend when it
// cannot choose.
type Picker interface {
	Pick(r *http.Request, skip Skip) (*Backend, error)
}

// BuildOptions configure the pickers of one route.
type BuildOptions struct {
	HashHeader     string         // header_hash: the header whose value is the key
	HashCookie     string         // cookie_hash: the cookie whose value is the key
	TrustedProxies []netip.Prefix // ip_hash: peers whose X-Forwarded-For is believed
	Rand           func() uint64  // nil: math/rand/v2 (must be safe for concurrent use)
}

// Builder builds a picker over a Set. It runs on the state path.
type Builder func(set *Set, opts BuildOptions) Picker

// Builders maps the policy names a config may use to their builders.
var Builders = map[string]Builder{
	"round_robin":          newRoundRobin,
	"weighted_round_robin": newWeightedRoundRobin,
	"least_connections":    newLeastConnections,
	"least_response_time":  newLeastResponseTime,
	"random":               newRandom,
	"p2c":                  newP2C,
	"ip_hash":              newIPHash,
	"header_hash":          newHeaderHash,
	"cookie_hash":          newCookieHash,
}

// DefaultPolicy is the chain of a route that names none.
var DefaultPolicy = []string{"p2c"}

// ValidatePolicy checks a chain's names.
func ValidatePolicy(names []string) error {
	if len(names) == 0 {
		return errors.New("empty policy chain")
	}
	for _, n := range names {
		if _, ok := Builders[n]; !ok {
			known := make([]string, 0, len(Builders))
			for k := range Builders {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("unknown policy %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return nil
}

// Skip is the set of backends already tried for a request. It is passed by
// value; the zero value is empty. It holds up to 10 backends (the retry
// limit); more are ignored.
type Skip struct {
	b [10]*Backend
	n uint8
}

// Add records b as tried.
func (s *Skip) Add(b *Backend) {
	if int(s.n) < len(s.b) && !s.Has(b) {
		s.b[s.n] = b
		s.n++
	}
}

// Has reports whether b was tried.
func (s Skip) Has(b *Backend) bool {
	return slices.Contains(s.b[:s.n], b)
}

// usable reports whether a picker may return b.
func usable(b *Backend, skip Skip, now int64) bool {
	return b.canTake(now) && (skip.n == 0 || !skip.Has(b))
}
