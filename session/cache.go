package session

import (
	"sync"
)

// cache is the bounded local cache of pins in front of the Store: 64
// shards, each a map under its own mutex (held for a map operation only).
// Lookups do not allocate. When a shard is full, inserting evicts an
// arbitrary entry (Go's map order is random): cheap, and good enough for a
// cache whose entries also expire.
type cache struct {
	shards [64]cacheShard
	per    int
}

type cacheKey struct {
	service string
	id      ID
}

type cacheEntry struct {
	backend   string
	expires   int64 // unix nanos: trust the entry until then
	refreshed int64 // unix nanos of the last TTL refresh sent to the store
	unstored  bool  // a new session's pin not yet sent to the store (PinNew)
}

type cacheShard struct {
	mu sync.Mutex
	m  map[cacheKey]cacheEntry
}

func newCache(size int) *cache {
	c := &cache{per: max(size/64, 16)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cacheEntry)
	}
	return c
}

func (c *cache) shard(id ID) *cacheShard { return &c.shards[id[0]&63] }

func (c *cache) get(k cacheKey, now int64) (cacheEntry, bool) {
	s := c.shard(k.id)
	s.mu.Lock()
	e, ok := s.m[k]
	s.mu.Unlock()
	if !ok || now >= e.expires {
		return cacheEntry{}, false
	}
	return e, true
}

// lastRefresh is the TTL refresh time of k's entry, expired or not (0: none).
func (c *cache) lastRefresh(k cacheKey) int64 {
	s := c.shard(k.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k].refreshed
}

func (c *cache) put(k cacheKey, e cacheEntry) {
	s := c.shard(k.id)
	s.mu.Lock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.per {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = e
	s.mu.Unlock()
}

// markRefreshed records a TTL refresh; it reports false when another
// goroutine refreshed it since `seen`.
func (c *cache) markRefreshed(k cacheKey, seen, now int64) bool {
	s := c.shard(k.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if !ok || e.refreshed != seen {
		return false
	}
	e.refreshed = now
	s.m[k] = e
	return true
}

// markStored records that k's pin was sent to the store; it reports false
// when another goroutine did it first.
func (c *cache) markStored(k cacheKey) bool {
	s := c.shard(k.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	if !ok || !e.unstored {
		return false
	}
	e.unstored = false
	s.m[k] = e
	return true
}

func (c *cache) delete(k cacheKey) {
	s := c.shard(k.id)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
