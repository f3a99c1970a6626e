package session

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis store's optional powers (see Batcher, Counter, Watcher): the
// background work in one pipelined round trip, session counts in
// HyperLogLogs, and pub/sub invalidation of the replicas' caches.

var (
	_ Batcher = (*RedisStore)(nil)
	_ Counter = (*RedisStore)(nil)
	_ Watcher = (*RedisStore)(nil)
)

// countBucket is the width of the session-count buckets.
const countBucket = 5 * time.Minute

// countKey names one bucket's HyperLogLog. The hash tag keeps a backend's
// buckets in one Redis Cluster slot, so one PFCOUNT can merge them (keys
// in different slots are a CROSSSLOT error).
func countKey(service, backend string, bucket int64) string {
	return "l:n:{" + service + ":" + backend + "}:" + strconv.FormatInt(bucket, 10)
}

// expiries remembers the count keys of the current bucket this process
// has given an expiry, so each gets one EXPIRE, not one per session. Keys
// of past buckets are forgotten when the bucket turns: the set stays as
// small as one bucket's service × backend pairs.
type expiries struct {
	mu     sync.Mutex
	bucket int64
	set    map[string]struct{}
}

// claim reports whether key (of bucket) still needs its expiry, and
// records it as given.
func (e *expiries) claim(bucket int64, key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if bucket != e.bucket || e.set == nil {
		e.bucket, e.set = bucket, map[string]struct{}{}
	}
	if _, done := e.set[key]; done {
		return false
	}
	e.set[key] = struct{}{}
	return true
}

// forget drops keys whose expiry was not applied: the next batch sets it.
func (e *expiries) forget(keys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range keys {
		delete(e.set, k)
	}
}

func (e *expiries) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.set)
}

// Batch runs jobs in one pipelined round trip: pins SET NX, refreshes
// PEXPIRE, one PFADD per count key (and its EXPIRE once per bucket).
func (s *RedisStore) Batch(ctx context.Context, jobs []Job) error {
	bucket := time.Now().UnixNano() / int64(countBucket)
	counts := map[string][]any{}
	var countTTL time.Duration
	var expiring []string
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, j := range jobs {
			switch {
			case j.Pin:
				p.SetArgs(ctx, j.Key, j.Backend, redis.SetArgs{Mode: "NX", TTL: j.TTL})
			case j.Touch:
				p.PExpire(ctx, j.Key, j.TTL)
			}
			key := countKey(j.Service, j.Backend, bucket)
			counts[key] = append(counts[key], j.ID[:])
			countTTL = max(countTTL, j.TTL)
		}
		for key, ids := range counts {
			p.PFAdd(ctx, key, ids...)
			if s.expiries.claim(bucket, key) {
				p.Expire(ctx, key, countTTL+2*countBucket)
				expiring = append(expiring, key)
			}
		}
		return nil
	})
	if len(cmds) > 0 {
		err = nil // Pipelined reports the first command's error, redis.Nil included
		for _, c := range cmds {
			// redis.Nil is a pin that was there already (SET NX): fine.
			if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
				err = e
				break
			}
		}
	}
	if err != nil {
		s.expiries.forget(expiring)
	}
	return err
}

// Sessions counts the live sessions of each backend of service: sessions
// pinned or refreshed within the last ttl, from HyperLogLogs in 5-minute
// buckets (about 1% error; a session that moved counts on both backends
// until its old bucket ages out).
func (s *RedisStore) Sessions(ctx context.Context, service string, backends []string, ttl time.Duration) (map[string]int64, error) {
	now := time.Now()
	first := now.Add(-ttl).UnixNano() / int64(countBucket)
	last := now.UnixNano() / int64(countBucket)
	cmds := make(map[string]*redis.IntCmd, len(backends))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range backends {
			keys := make([]string, 0, last-first+1)
			for k := first; k <= last; k++ {
				keys = append(keys, countKey(service, b, k))
			}
			cmds[b] = p.PFCount(ctx, keys...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(backends))
	for b, c := range cmds {
		out[b] = c.Val()
	}
	return out, nil
}

// Watch subscribes to InvalidationChannel until ctx ends: drop gets the
// store key of every pin another replica changed, flush is called on each
// (re)subscription, since messages may have been missed while
// disconnected.
func (s *RedisStore) Watch(ctx context.Context, flush func(), drop func(key string)) error {
	ps := s.c.Subscribe(ctx, InvalidationChannel)
	// Receive blocks in a socket read that ctx does not interrupt: closing
	// the subscription does.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			select { // go-redis reconnects by itself; don't spin meanwhile
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				flush()
			}
		case *redis.Message:
			drop(m.Payload)
		}
	}
}
