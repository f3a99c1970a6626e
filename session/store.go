package session

import (
	"context"
	"sync"
	"time"
)

// Store maps session keys to backend ids. Implementations are safe for
// concurrent use. ttl is the sliding lifetime of a key.
type Store interface {
	Get(ctx context.Context, key string) (backendID string, ok bool, err error)
	// SetNX stores backendID only when key is absent and returns the value
	// now stored.
	SetNX(ctx context.Context, key, backendID string, ttl time.Duration) (current string, err error)
	// CompareAndSwap sets key to new when its value is old ("" = absent) and
	// returns new; otherwise it changes nothing and returns the value now
	// stored, so racing re-pins converge on one backend.
	CompareAndSwap(ctx context.Context, key, old, new string, ttl time.Duration) (current string, err error)
	// Touch refreshes the TTL without rewriting the value.
	Touch(ctx context.Context, key string, ttl time.Duration) error
	// Tombstone replaces key's pin by the tombstone value for ttl (an
	// unpin that must outlive every cookie hint of the session), and tells
	// the other replicas (see Watcher).
	Tombstone(ctx context.Context, key string, ttl time.Duration) error
}

// tombstone is the value of an unpinned session's key: never a backend id
// (Consul ids carry no NUL). Compare-and-swap from a backend and SET NX
// leave it in place, so no replayed or racing pin brings the session back.
const tombstone = "\x00unpinned"

// Optional powers of a Store, found by type assertion.

// Job is one piece of background store work: a new session's pin (SET NX)
// or a TTL refresh, each also counted for its backend; neither Pin nor
// Touch: counted only (a re-pin, written already).
type Job struct {
	Key              string
	Service, Backend string
	// From is the backend a re-pinned session left: it no longer counts
	// there.
	From       string
	ID         ID
	TTL        time.Duration
	Pin, Touch bool
	At         time.Time // when the job was made (replay of pins)
}

// Batcher is a Store that runs a batch of jobs in one round trip. Without
// it the jobs are run one call at a time (and not counted).
type Batcher interface {
	Batch(ctx context.Context, jobs []Job) error
}

// Counter is a Store that counts the live sessions of each backend of a
// service (the admin API's figures, least_sessions' counts): sessions
// pinned or refreshed within their TTL, each on the backend it is pinned
// to.
type Counter interface {
	Sessions(ctx context.Context, service string, backends []string) (map[string]int64, error)
}

// Watcher is a Store shared with other replicas that tells which pins
// they changed: Watch calls drop with their keys until ctx ends, and flush
// when messages may have been missed.
type Watcher interface {
	Watch(ctx context.Context, flush func(), drop func(key string)) error
}

// MemoryStore is a bounded, expiring in-memory Store: the default without
// Redis (sessions then live in one process only).
type MemoryStore struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[string]memEntry
}

type memEntry struct {
	backend string
	expires time.Time
}

var (
	_ Store   = (*MemoryStore)(nil)
	_ Counter = (*MemoryStore)(nil)
)

// NewMemoryStore holds at most maxEntries keys (evicting a random one when
// full); now may be nil (time.Now).
func NewMemoryStore(maxEntries int, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	if maxEntries <= 0 {
		maxEntries = DefaultCacheSize
	}
	return &MemoryStore{max: maxEntries, now: now, entries: map[string]memEntry{}}
}

func (m *MemoryStore) get(key string) (memEntry, bool) {
	e, ok := m.entries[key]
	if ok && !m.now().Before(e.expires) {
		delete(m.entries, key)
		return memEntry{}, false
	}
	return e, ok
}

func (m *MemoryStore) put(key, backend string, ttl time.Duration) {
	if _, exists := m.entries[key]; !exists && len(m.entries) >= m.max {
		m.evict()
	}
	m.entries[key] = memEntry{backend: backend, expires: m.now().Add(ttl)}
}

// evict drops an expired entry among up to 16 visited, or else the first
// visited (Go's map order is random, so that is a random entry).
func (m *MemoryStore) evict() {
	now := m.now()
	victim, n := "", 0
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			victim = k
			break
		}
		if n == 0 {
			victim = k
		}
		if n++; n == 16 {
			break
		}
	}
	delete(m.entries, victim)
}

// Get returns the backend pinned to key, unless its TTL has run out.
func (m *MemoryStore) Get(_ context.Context, key string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.get(key)
	return e.backend, ok, nil
}

// SetNX pins key to backend unless a live pin holds it; it returns the
// pin now held.
func (m *MemoryStore) SetNX(_ context.Context, key, backend string, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.get(key); ok {
		return e.backend, nil
	}
	m.put(key, backend, ttl)
	return backend, nil
}

// CompareAndSwap pins key to new when it holds old ("" = absent or
// expired) and returns new; otherwise it returns the value held ("" when
// none).
func (m *MemoryStore) CompareAndSwap(_ context.Context, key, old, new string, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.get(key)
	if (ok && e.backend == old) || (!ok && old == "") {
		m.put(key, new, ttl)
		return new, nil
	}
	if !ok {
		return "", nil
	}
	return e.backend, nil
}

// Touch makes a live pin of key last ttl from now; an absent or expired
// one stays gone.
func (m *MemoryStore) Touch(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.get(key); ok {
		e.expires = m.now().Add(ttl)
		m.entries[key] = e
	}
	return nil
}

// Tombstone replaces key's pin by the tombstone for ttl. (One process:
// there are no other replicas to tell.)
func (m *MemoryStore) Tombstone(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, tombstone, ttl)
	return nil
}

// Len is the number of live keys (tests, admin counts).
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Sessions counts the live sessions of each backend of service, exactly.
func (m *MemoryStore) Sessions(_ context.Context, service string, _ []string) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	now := m.now()
	prefix := "l:" + service + ":"
	for k, e := range m.entries {
		if now.Before(e.expires) && e.backend != tombstone && len(k) == len(prefix)+len(ID{}) && k[:len(prefix)] == prefix {
			out[e.backend]++
		}
	}
	return out, nil
}
