package session

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Source says where Lookup found a pin.
type Source uint8

const (
	SourceNone  Source = iota
	SourceCache        // the local cache (or a pin waiting to be replayed)
	SourceStore        // the Store (Redis)
)

// ErrStoreDown is returned while the store's breaker is open.
var ErrStoreDown = errors.New("session store unreachable")

// Observer receives the session layer's measurements (Prometheus in the
// gateway). Methods must be cheap and safe for concurrent use.
type Observer interface {
	StoreError(op string)
	StoreLatency(op string, d time.Duration)
	CacheHit()
	CacheMiss()
	// Expired counts sessions whose pin had expired when their client came back.
	Expired()
}

// Options configure an Affinity. Zero fields take the defaults in brackets.
type Options struct {
	Store Store // required
	// Codec signs and checks latch's cookie (required by Resolve and Commit).
	Codec *Codec
	// Client is the Redis client behind Store, for pub/sub invalidation and
	// session counts; nil with a memory store.
	Client redis.UniversalClient
	// CacheSize bounds the local cache [100,000 sessions].
	CacheSize int
	// CacheTTL is how long a cached pin is trusted without asking the Store
	// [60s]. Re-pins and unpins by other replicas arrive sooner through
	// pub/sub; CacheTTL bounds staleness only while pub/sub is down.
	CacheTTL time.Duration
	// StoreTimeout bounds each Store call on the request path [25ms].
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
// Every method is safe for concurrent use and bounded by StoreTimeout.
// Run owns the background goroutines.
type Affinity struct {
	opts    Options
	cache   *cache
	br      storeBreaker
	jobs    chan job
	mu      sync.Mutex // guards pending
	pending map[string]pendingPin
	expired sync.Map // count keys this process has set an expiry on
}

type pendingPin struct {
	backend string
	ttl     time.Duration
	at      time.Time
	repin   bool
}

// job is background store work: a TTL refresh or a new session's pin,
// and a session count.
type job struct {
	key     string
	ttl     time.Duration
	service string
	backend string
	id      ID
	touch   bool
	pin     bool // SET NX the pin (PinNew)
	at      time.Time
}

// maxBatch bounds the jobs one background round trip carries.
const maxBatch = 256

// NewAffinity builds the session layer; call Run to start its background work.
func NewAffinity(opts Options) *Affinity {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 100_000
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 60 * time.Second
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 25 * time.Millisecond
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
	return &Affinity{opts: opts, cache: newCache(opts.CacheSize), jobs: make(chan job, 4096),
		pending: map[string]pendingPin{}}
}

type nopObserver struct{}

func (nopObserver) StoreError(string)                  {}
func (nopObserver) StoreLatency(string, time.Duration) {}
func (nopObserver) CacheHit()                          {}
func (nopObserver) CacheMiss()                         {}
func (nopObserver) Expired()                           {}

// Codec is the cookie codec of Options.
func (a *Affinity) Codec() *Codec { return a.opts.Codec }

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

// call runs one Store call under the breaker and the timeout, measuring it.
func (a *Affinity) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	now := a.now()
	if !a.br.allow(now) {
		return ErrStoreDown
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.StoreTimeout)
	start := time.Now()
	err := f(ctx)
	cancel()
	a.opts.Metrics.StoreLatency(op, time.Since(start))
	if err != nil && !errors.Is(err, context.Canceled) {
		a.opts.Metrics.StoreError(op)
		if a.br.failure(a.now()) {
			a.opts.Logger.Warn("session store unreachable: serving from the local cache and cookie hints", "err", err)
		}
		return err
	}
	if a.br.success() {
		a.opts.Logger.Info("session store reachable again")
	}
	return err
}

// Lookup returns the backend pinned to (service, id). ok=false with a nil
// error means the session is not pinned; with an error, the store could not
// be asked and the caller should fall back on the cookie's hint.
func (a *Affinity) Lookup(ctx context.Context, service string, id ID) (backendID string, src Source, ok bool, err error) {
	now := a.now()
	k := cacheKey{service, id}
	if e, hit := a.cache.get(k, now); hit {
		a.opts.Metrics.CacheHit()
		return e.backend, SourceCache, true, nil
	}
	a.opts.Metrics.CacheMiss()
	key := storeKey(service, id)
	if p, waiting := a.pendingGet(key); waiting {
		return p.backend, SourceCache, true, nil
	}
	var found bool
	err = a.call(ctx, "get", func(ctx context.Context) error {
		var err error
		backendID, found, err = a.opts.Store.Get(ctx, key)
		return err
	})
	if err != nil || !found {
		return "", SourceNone, false, err
	}
	// Keep the refresh time of an expired entry of this session, so a cache
	// refresh does not cost a TTL refresh too; a session new to this
	// replica (0) gets its TTL refreshed on the first Touch.
	a.cache.put(k, cacheEntry{backend: backendID, expires: now + int64(a.opts.CacheTTL), refreshed: a.cache.lastRefresh(k)})
	return backendID, SourceStore, true, nil
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
		cur, err = a.opts.Store.SetNX(ctx, key, backendID, ttl)
		return err
	})
	now := a.now()
	if err != nil {
		cur = backendID
		a.addPending(key, pendingPin{backend: backendID, ttl: ttl, at: a.opts.Now()})
	} else {
		a.enqueue(job{service: service, backend: cur, id: id, ttl: ttl})
	}
	a.cache.put(cacheKey{service, id}, cacheEntry{backend: cur, expires: now + int64(a.opts.CacheTTL), refreshed: now})
	return cur, nil
}

// PinNew records the pin of a session whose id this replica has just
// created: no other replica can hold it, so there is no race to settle and
// nothing to wait for. The pin is cached at once and written to the store
// in the background, batched with other work in one round trip; until it
// lands, the cookie's signed hint keeps the session on its backend on any
// replica. While the store is down it is kept for replay, as in Pin.
func (a *Affinity) PinNew(ctx context.Context, service string, id ID, backendID string, ttl time.Duration) {
	key := storeKey(service, id)
	now := a.opts.Now()
	j := job{key: key, ttl: ttl, service: service, backend: backendID, id: id, pin: true, at: now}
	select {
	case a.jobs <- j:
		ns := now.UnixNano()
		a.cache.put(cacheKey{service, id}, cacheEntry{backend: backendID, expires: ns + int64(a.opts.CacheTTL), refreshed: ns})
	default: // the background is behind: write it now
		_, _ = a.Pin(ctx, service, id, backendID, ttl)
	}
}

// Repin moves a session from old to new with compare-and-swap and returns
// the backend it is now pinned to (another replica's choice when that one
// won the race). While the store is down the new pin is cached and kept for
// replay, and the error says so.
func (a *Affinity) Repin(ctx context.Context, service string, id ID, old, new string, ttl time.Duration) (string, error) {
	key := storeKey(service, id)
	cur := new
	err := a.call(ctx, "repin", func(ctx context.Context) error {
		var err error
		if cur, err = a.opts.Store.CompareAndSwap(ctx, key, old, new, ttl); err == nil && cur == "" {
			// The old pin expired meanwhile: take the empty slot.
			cur, err = a.opts.Store.CompareAndSwap(ctx, key, "", new, ttl)
		}
		return err
	})
	now := a.now()
	if err != nil {
		cur = new
		a.addPending(key, pendingPin{backend: new, ttl: ttl, at: a.opts.Now(), repin: true})
	} else {
		a.enqueue(job{service: service, backend: cur, id: id, ttl: ttl})
	}
	a.cache.put(cacheKey{service, id}, cacheEntry{backend: cur, expires: now + int64(a.opts.CacheTTL), refreshed: now})
	return cur, err
}

// Touch slides the session's TTL. It costs no store command on most
// requests: the refresh is sent in the background, at most once per ttl/8
// per session, and dropped when the queue is full.
func (a *Affinity) Touch(service string, id ID, ttl time.Duration) {
	now := a.now()
	k := cacheKey{service, id}
	e, ok := a.cache.get(k, now)
	if !ok || now-e.refreshed < int64(ttl/8) {
		return
	}
	if !a.cache.markRefreshed(k, e.refreshed, now) {
		return
	}
	a.enqueue(job{key: storeKey(service, id), ttl: ttl, service: service, backend: e.backend, id: id, touch: true})
}

func (a *Affinity) enqueue(j job) {
	select {
	case a.jobs <- j:
	default: // refreshes are best effort: the next request tries again
	}
}

// Unpin deletes a session's pin everywhere.
func (a *Affinity) Unpin(ctx context.Context, service string, id ID) error {
	key := storeKey(service, id)
	a.cache.delete(cacheKey{service, id})
	a.mu.Lock()
	delete(a.pending, key)
	a.mu.Unlock()
	return a.call(ctx, "unpin", func(ctx context.Context) error { return a.opts.Store.Delete(ctx, key) })
}

// countBucket is the width of the session-count buckets.
const countBucket = 5 * time.Minute

func countKey(service, backend string, bucket int64) string {
	return "l:n:" + service + ":" + backend + ":" + strconv.FormatInt(bucket, 10)
}

// Sessions counts the live sessions of each backend of service: sessions
// pinned or refreshed within the last ttl, from HyperLogLogs in 5-minute
// buckets (about 1% error; a session that moved counts on both backends
// until its old bucket ages out). The memory store counts exactly.
func (a *Affinity) Sessions(ctx context.Context, service string, backends []string, ttl time.Duration) (map[string]int64, error) {
	out := make(map[string]int64, len(backends))
	if a.opts.Client == nil {
		if m, ok := a.opts.Store.(*MemoryStore); ok {
			prefix := "l:" + service + ":"
			m.each(func(key, backend string) {
				if len(key) == len(prefix)+16 && key[:len(prefix)] == prefix {
					out[backend]++
				}
			})
		}
		return out, nil
	}
	now := a.opts.Now()
	first := now.Add(-ttl).UnixNano() / int64(countBucket)
	last := now.UnixNano() / int64(countBucket)
	cmds := make(map[string]*redis.IntCmd, len(backends))
	err := a.call(ctx, "count", func(ctx context.Context) error {
		_, err := a.opts.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, b := range backends {
				keys := make([]string, 0, last-first+1)
				for k := first; k <= last; k++ {
					keys = append(keys, countKey(service, b, k))
				}
				cmds[b] = p.PFCount(ctx, keys...)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	for b, c := range cmds {
		out[b] = c.Val()
	}
	return out, nil
}

// Run runs the background work until ctx ends: TTL refreshes and session
// counts, replay of pins made while the store was down, and (with a Redis
// client) the pub/sub subscription that keeps replicas' caches coherent.
func (a *Affinity) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.runJobs(ctx) })
	wg.Go(func() { a.runReplay(ctx) })
	if a.opts.Client != nil {
		wg.Go(func() { a.runInvalidations(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func (a *Affinity) runJobs(ctx context.Context) {
	batch := make([]job, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-a.jobs:
			batch = append(batch[:0], j)
		}
	more: // whatever else is waiting goes in the same round trip
		for len(batch) < maxBatch {
			select {
			case j := <-a.jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		a.doJobs(ctx, batch)
	}
}

// doJobs runs a batch of background work: with Redis, one pipelined round
// trip (pins SET NX, refreshes PEXPIRE, one PFADD per count key).
func (a *Affinity) doJobs(ctx context.Context, batch []job) {
	if a.opts.Client == nil {
		for _, j := range batch {
			switch {
			case j.pin:
				err := a.call(ctx, "pin", func(ctx context.Context) error {
					_, err := a.opts.Store.SetNX(ctx, j.key, j.backend, j.ttl)
					return err
				})
				if err != nil {
					a.addPending(j.key, pendingPin{backend: j.backend, ttl: j.ttl, at: j.at})
				}
			case j.touch:
				_ = a.call(ctx, "touch", func(ctx context.Context) error { return a.opts.Store.Touch(ctx, j.key, j.ttl) })
			}
		}
		return
	}
	bucket := a.opts.Now().UnixNano() / int64(countBucket)
	counts := map[string][]any{}
	var countTTL time.Duration
	var expiring []string // count keys given their expiry in this batch
	err := a.call(ctx, "batch", func(ctx context.Context) error {
		cmds, err := a.opts.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, j := range batch {
				switch {
				case j.pin:
					p.SetArgs(ctx, j.key, j.backend, redis.SetArgs{Mode: "NX", TTL: j.ttl})
				case j.touch:
					p.PExpire(ctx, j.key, j.ttl)
				}
				key := countKey(j.service, j.backend, bucket)
				counts[key] = append(counts[key], j.id[:])
				countTTL = max(countTTL, j.ttl)
			}
			for key, ids := range counts {
				p.PFAdd(ctx, key, ids...)
				// One expiry per count key and process (not per session).
				if _, done := a.expired.LoadOrStore(key, struct{}{}); !done {
					p.Expire(ctx, key, countTTL+2*countBucket)
					expiring = append(expiring, key)
				}
			}
			return nil
		})
		for _, c := range cmds {
			// redis.Nil is a pin that was there already (SET NX): fine.
			if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
				return e
			}
		}
		if len(cmds) == 0 {
			return err
		}
		return nil
	})
	if err != nil {
		for _, key := range expiring {
			a.expired.Delete(key) // not applied: the next batch sets it
		}
		for _, j := range batch {
			if j.pin { // kept for replay; refreshes and counts are best effort
				a.addPending(j.key, pendingPin{backend: j.backend, ttl: j.ttl, at: j.at})
			}
		}
	}
}

// runReplay writes the pins kept while the store was down once it is back.
// A new session's pin is written only if absent (SET NX); a re-pin
// overwrites, being the latest decision about that session.
func (a *Affinity) runReplay(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		batch := make(map[string]pendingPin, len(a.pending))
		for k, p := range a.pending {
			batch[k] = p
			if len(batch) == 1000 {
				break
			}
		}
		a.mu.Unlock()
		for key, p := range batch {
			left := p.ttl - a.opts.Now().Sub(p.at)
			if left <= 0 {
				a.dropPending(key, p)
				continue
			}
			err := a.call(ctx, "replay", func(ctx context.Context) error {
				if p.repin {
					return a.opts.Store.Set(ctx, key, p.backend, left)
				}
				_, err := a.opts.Store.SetNX(ctx, key, p.backend, left)
				return err
			})
			if err != nil {
				break // still down: try again next tick
			}
			a.dropPending(key, p)
		}
	}
}

func (a *Affinity) addPending(key string, p pendingPin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.pending[key]; !ok && len(a.pending) >= a.opts.MaxPending {
		return // bounded: the cookie hint still carries this session
	}
	a.pending[key] = p
}

func (a *Affinity) pendingGet(key string) (pendingPin, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return pendingPin{}, false
	}
	p, ok := a.pending[key]
	return p, ok
}

// dropPending removes key unless it was replaced meanwhile.
func (a *Affinity) dropPending(key string, p pendingPin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.pending[key]; ok && cur == p {
		delete(a.pending, key)
	}
}

// Pending is the number of pins waiting for the store to come back.
func (a *Affinity) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// runInvalidations subscribes to InvalidationChannel and drops the cached
// pins other replicas changed. Each (re)subscription flushes the cache,
// since messages may have been missed while disconnected.
func (a *Affinity) runInvalidations(ctx context.Context) {
	ps := a.opts.Client.Subscribe(ctx, InvalidationChannel)
	// Receive blocks in a socket read that ctx does not interrupt: closing
	// the subscription does.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select { // go-redis reconnects by itself; don't spin meanwhile
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				a.cache.flush()
			}
		case *redis.Message:
			if k, ok := parseStoreKey(m.Payload); ok {
				a.cache.delete(k)
			}
		}
	}
}
