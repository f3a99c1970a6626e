package session

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrStoreDown is returned while the store's breaker is open.
var ErrStoreDown = errors.New("session store unreachable")

// ErrUnpinned is Lookup's answer for a session unpinned through the admin
// API: it is over, and its cookie's hint must not bring it back.
var ErrUnpinned = errors.New("session unpinned")

// Observer receives the session layer's measurements (Prometheus in the
// gateway). Methods must be cheap and safe for concurrent use.
type Observer interface {
	StoreError(op string)
	StoreLatency(op string, d time.Duration)
	CacheHit()
	CacheMiss()
	// Expired counts sessions whose pin had expired when their client came back.
	Expired()
	// Resigned counts cookies signed with an old secret, reissued under the
	// first.
	Resigned()
}

// The session layer's defaults (the config's redis section documents them).
const (
	DefaultCacheSize    = 100_000
	DefaultCacheTTL     = 60 * time.Second
	DefaultStoreTimeout = 25 * time.Millisecond
)

// Options configure an Affinity. Zero fields take the defaults in brackets.
type Options struct {
	Store Store // required
	// Codec signs and checks latch's cookie (required by Resolve and Commit).
	Codec *Codec
	// CacheSize bounds the local cache [100,000 sessions].
	CacheSize int
	// CacheTTL is how long a cached pin is trusted without asking the Store
	// [60s]. Re-pins and unpins by other replicas arrive sooner through
	// pub/sub; CacheTTL bounds staleness only while pub/sub is down.
	CacheTTL time.Duration
	// StoreTimeout bounds each Store call, on the request path and in the
	// background [25ms], but for the calls that settle a re-pin between
	// replicas (its compare-and-swap, the replay of one, a lookup of a
	// session whose re-pin is in doubt): they wait max(4×StoreTimeout,
	// 100ms) (issue 12).
	StoreTimeout time.Duration
	// MaxPending bounds the pins kept for replay while the Store is down [100,000].
	MaxPending int
	Now        func() time.Time // [time.Now]
	Logger     *slog.Logger     // [slog.Default()]
	Metrics    Observer         // [none]
}

// Affinity is the session layer of one latch process: a bounded local cache
// in front of a Store, invalidated across replicas by Redis pub/sub, with a
// breaker around the Store so a dead Redis costs a request nothing, and a
// replay queue so pins made while it was down reach it when it is back.
//
// Every method is safe for concurrent use. Each Store call is bounded by
// StoreTimeout, or by the longer settle timeout when it settles a re-pin
// (Options.StoreTimeout), so Repin and a Lookup of a session whose re-pin
// is in doubt may wait longer than StoreTimeout. Run owns the background
// goroutines.
type Affinity struct {
	opts    Options
	cache   *cache
	br      *gobreaker.CircuitBreaker[struct{}]
	jobs    chan Job
	mu      sync.Mutex // guards pending
	pending map[string]pendingPin
	codec   atomic.Pointer[Codec] // Options.Codec, replaced by SetCodec
}

type pendingPin struct {
	backend string
	ttl     time.Duration
	at      time.Time
	// repin: a re-pin from old, replayed as a compare-and-swap against old.
	repin bool
	old   string
}

// maxBatch bounds the jobs one background round trip carries.
const maxBatch = 256

// NewAffinity builds the session layer; call Run to start its background work.
func NewAffinity(opts Options) *Affinity {
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = nopObserver{}
	}
	a := &Affinity{opts: opts, cache: newCache(opts.CacheSize), jobs: make(chan Job, 4096),
		pending: map[string]pendingPin{}, br: newStoreBreaker(opts.Logger)}
	a.codec.Store(opts.Codec)
	return a
}

type nopObserver struct{}

func (nopObserver) StoreError(string)                  {}
func (nopObserver) StoreLatency(string, time.Duration) {}
func (nopObserver) CacheHit()                          {}
func (nopObserver) CacheMiss()                         {}
func (nopObserver) Expired()                           {}
func (nopObserver) Resigned()                          {}

// Codec is the cookie codec: Options.Codec, or the last SetCodec's. It is
// the one place cookie secrets are read from.
func (a *Affinity) Codec() *Codec { return a.codec.Load() }

// SetCodec replaces the cookie codec (a configuration reload rotating
// secrets); requests after it sign and verify with c. Safe for concurrent
// use with every other method.
func (a *Affinity) SetCodec(c *Codec) { a.codec.Store(c) }

// storeKey is the Redis key of a session: "l:" + service + ":" + the 16
// raw id bytes. Short keys keep Redis memory per session small.
func storeKey(service string, id ID) string {
	b := make([]byte, 0, 3+len(service)+len(id))
	b = append(b, "l:"...)
	b = append(b, service...)
	b = append(b, ':')
	b = append(b, id[:]...)
	return string(b)
}

// parseStoreKey inverts storeKey.
func parseStoreKey(key string) (cacheKey, bool) {
	if len(key) < 2+1+16 || key[:2] != "l:" || key[len(key)-17] != ':' {
		return cacheKey{}, false
	}
	var k cacheKey
	k.service = key[2 : len(key)-17]
	copy(k.id[:], key[len(key)-16:])
	return k, true
}

func (a *Affinity) now() int64 { return a.opts.Now().UnixNano() }

// Lookup returns the backend pinned to (service, id). ok=false with a nil
// error means the session is not pinned; with an error, the store could not
// be asked and the caller should fall back on the cookie's hint.
func (a *Affinity) Lookup(ctx context.Context, service string, id ID) (backendID string, ok bool, err error) {
	now := a.now()
	k := cacheKey{service, id}
	if e, hit := a.cache.get(k, now); hit {
		a.opts.Metrics.CacheHit()
		if e.backend == tombstone {
			return "", false, ErrUnpinned
		}
		return e.backend, true, nil
	}
	a.opts.Metrics.CacheMiss()
	key := storeKey(service, id)
	p, waiting := a.pendingGet(key)
	var found bool
	get := func(ctx context.Context) error {
		var err error
		backendID, found, err = a.opts.Store.Get(ctx, key)
		return err
	}
	if waiting && p.repin {
		err = a.settle(ctx, "get", get) // a re-pin in doubt: the store's answer settles it
	} else {
		err = a.call(ctx, "get", get)
	}
	if err != nil {
		// A pin waiting for the store is this replica's best knowledge
		// while the store cannot answer, never over the store's answer:
		// a re-pin that timed out may have lost its race (issue 12).
		if waiting {
			return p.backend, true, nil
		}
		return "", false, err
	}
	if !found {
		return "", false, nil
	}
	if backendID == tombstone {
		a.cache.put(k, cacheEntry{backend: tombstone, expires: now + int64(a.opts.CacheTTL)})
		return "", false, ErrUnpinned
	}
	// Keep the refresh time of an expired entry of this session, so a cache
	// refresh does not cost a TTL refresh too; a session new to this
	// replica (0) gets its TTL refreshed on the first Touch.
	a.cache.put(k, cacheEntry{backend: backendID, expires: now + int64(a.opts.CacheTTL), refreshed: a.cache.lastRefresh(k)})
	return backendID, true, nil
}

// LookupStore asks the Store only, bypassing the cache (admin API).
func (a *Affinity) LookupStore(ctx context.Context, service string, id ID) (string, bool, error) {
	var b string
	var ok bool
	err := a.call(ctx, "get", func(ctx context.Context) error {
		var err error
		b, ok, err = a.opts.Store.Get(ctx, storeKey(service, id))
		return err
	})
	if err == nil && ok && b == tombstone {
		return "", false, ErrUnpinned
	}
	return b, ok, err
}

// Pin records a new session. When another replica pinned id already, its
// backend is returned instead. While the store is down the pin is cached
// and kept for replay, and Pin still succeeds.
func (a *Affinity) Pin(ctx context.Context, service string, id ID, backendID string, ttl time.Duration) (string, error) {
	key := storeKey(service, id)
	cur := backendID
	err := a.call(ctx, "pin", func(ctx context.Context) error {
		var err error
		if cur, err = a.opts.Store.SetNX(ctx, key, backendID, ttl); err == nil && cur == tombstone {
			// An unpinned session of the application's (learn mode)
			// starts again under its id: the policy's pick takes it.
			cur, err = a.opts.Store.CompareAndSwap(ctx, key, tombstone, backendID, ttl)
		}
		return err
	})
	now := a.now()
	if err != nil {
		cur = backendID
		a.addPending(key, pendingPin{backend: backendID, ttl: ttl, at: a.opts.Now()})
	} else {
		a.enqueue(Job{Key: key, Service: service, Backend: cur, ID: id, TTL: ttl})
	}
	a.cache.put(cacheKey{service, id}, cacheEntry{backend: cur, expires: now + int64(a.opts.CacheTTL), refreshed: now})
	return cur, nil
}

// PinNew records the pin of a session whose id this replica has just
// created: no other replica can hold it, so there is no race to settle.
// It is cached only: the store hears of it when the session comes back
// (Touch writes it, batched, on its second request here; another replica
// restores it from the cookie's signed hint and pins it). Issue 17: a
// client that never returns, a flood of cookie-less requests included,
// costs the store nothing.
func (a *Affinity) PinNew(ctx context.Context, service string, id ID, backendID string, ttl time.Duration) {
	ns := a.now()
	a.cache.put(cacheKey{service, id}, cacheEntry{backend: backendID, expires: ns + int64(a.opts.CacheTTL), refreshed: ns, unstored: true})
}

// Repin moves a session from old to new with compare-and-swap and returns
// the backend it is now pinned to (another replica's choice when that one
// won the race). When the store does not answer, the error says so and new
// is kept for replay, as a compare-and-swap against old too; it is not
// cached: another replica may have won meanwhile, and the next request
// asks the store again (issue 12: a pick kept as if it had won overwrote
// the winner's pin on replay, or kept the replicas' caches apart).
func (a *Affinity) Repin(ctx context.Context, service string, id ID, old, new string, ttl time.Duration) (string, error) {
	key := storeKey(service, id)
	var cur string
	err := a.settle(ctx, "repin", func(ctx context.Context) error {
		var err error
		cur, err = a.swap(ctx, key, old, new, ttl)
		return err
	})
	k := cacheKey{service, id}
	if err != nil {
		a.cache.delete(k)
		a.addPending(key, pendingPin{backend: new, ttl: ttl, at: a.opts.Now(), repin: true, old: old})
		return new, err
	}
	now := a.now()
	a.cache.put(k, cacheEntry{backend: cur, expires: now + int64(a.opts.CacheTTL), refreshed: now})
	if cur == tombstone {
		return "", ErrUnpinned
	}
	j := Job{Key: key, Service: service, Backend: cur, ID: id, TTL: ttl}
	if cur == new {
		j.From = old // ours won: the session leaves old's count
	}
	a.enqueue(j)
	return cur, nil
}

// swap is the store's compare-and-swap of a re-pin: key from old to new,
// or to new when the old pin expired meanwhile (the empty slot is taken).
// It returns the backend now pinned.
func (a *Affinity) swap(ctx context.Context, key, old, new string, ttl time.Duration) (string, error) {
	cur, err := a.opts.Store.CompareAndSwap(ctx, key, old, new, ttl)
	if err == nil && cur == "" {
		cur, err = a.opts.Store.CompareAndSwap(ctx, key, "", new, ttl)
	}
	return cur, err
}

// Touch slides the session's TTL. It costs no store command on most
// requests: the refresh is sent in the background, at most once per ttl/8
// per session, and dropped when the queue is full.
func (a *Affinity) Touch(service string, id ID, ttl time.Duration) {
	now := a.now()
	k := cacheKey{service, id}
	e, ok := a.cache.get(k, now)
	if ok && e.unstored {
		// The session's second request: its pin goes to the store now,
		// batched (SET NX; while the store is down, kept for replay).
		if a.cache.markStored(k) {
			j := Job{Key: storeKey(service, id), TTL: ttl, Service: service, Backend: e.backend, ID: id, Pin: true, At: a.opts.Now()}
			select {
			case a.jobs <- j:
			default: // the background is behind: write it now
				_, _ = a.Pin(context.Background(), service, id, e.backend, ttl)
			}
		}
		return
	}
	if !ok || now-e.refreshed < int64(ttl/8) {
		return
	}
	if !a.cache.markRefreshed(k, e.refreshed, now) {
		return
	}
	a.enqueue(Job{Key: storeKey(service, id), TTL: ttl, Service: service, Backend: e.backend, ID: id, Touch: true})
}

func (a *Affinity) enqueue(j Job) {
	select {
	case a.jobs <- j:
	default: // refreshes are best effort: the next request tries again
	}
}

// Unpin ends a session on every replica: its pin is replaced by a
// tombstone living ttl (the session TTL: as long as any cookie's hint for
// it may be honoured), which the other replicas' caches learn through the
// store's invalidations. The session's next request, on any replica, starts
// a new session (latch's cookie) or is placed anew (learn mode): an unpin
// wins over the cookie's hint, and over pins waiting for replay.
func (a *Affinity) Unpin(ctx context.Context, service string, id ID, ttl time.Duration) error {
	key := storeKey(service, id)
	a.mu.Lock()
	delete(a.pending, key)
	a.mu.Unlock()
	err := a.call(ctx, "unpin", func(ctx context.Context) error { return a.opts.Store.Tombstone(ctx, key, ttl) })
	if err != nil {
		return err
	}
	now := a.now()
	a.cache.put(cacheKey{service, id}, cacheEntry{backend: tombstone, expires: now + int64(a.opts.CacheTTL)})
	return nil
}

// Sessions counts the live sessions of each backend of service (pinned or
// refreshed within their TTL), when the store can count them (Counter);
// otherwise the map is empty.
func (a *Affinity) Sessions(ctx context.Context, service string, backends []string) (map[string]int64, error) {
	c, ok := a.opts.Store.(Counter)
	if !ok {
		return map[string]int64{}, nil
	}
	var out map[string]int64
	err := a.call(ctx, "count", func(ctx context.Context) error {
		var err error
		out, err = c.Sessions(ctx, service, backends)
		return err
	})
	return out, err
}
