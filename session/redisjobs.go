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
// background work in one pipelined round trip, live-session counts in a
// sorted set per backend, and pub/sub invalidation of the replicas' caches.

var (
	_ Batcher = (*RedisStore)(nil)
	_ Counter = (*RedisStore)(nil)
	_ Watcher = (*RedisStore)(nil)
)

// countExpiry is how often each count key's own expiry is renewed: a key
// outlives the last session written to it by its TTL plus this, so the
// counts of a backend that left vanish by themselves.
const countExpiry = 5 * time.Minute

// countTrimEvery is how often each count key is trimmed of the sessions
// whose expiry passed by the writes themselves (one ZREMRANGEBYSCORE per
// key per period per process). Issue 26: the sets were trimmed only by a
// count, which only least_sessions and the admin API read, while every
// write renews the key's expiry: under another policy a busy service's
// sets kept every session ever stored.
const countTrimEvery = 5 * time.Second

// countKey names the sorted set of one backend's live sessions: members
// are session ids, scores the unix milliseconds at which each expires
// (its last pin or refresh plus its TTL). The hash tag keeps the key in
// one Redis Cluster slot with nothing else, so a batch's commands on it
// never span slots.
//
// Issue 26: counts were HyperLogLogs in 5-minute buckets, which cannot
// forget: a session that moved counted on both backends, and one that
// ended counted until its bucket aged out, up to TTL + 5 minutes.
func countKey(service, backend string) string {
	return "l:s:{" + service + ":" + backend + "}"
}

// expiries remembers the count keys this process has given an expiry (or
// trimmed) in the current period, so each gets one EXPIRE (or
// ZREMRANGEBYSCORE) per period, not one per session. The set is forgotten when the period turns: it stays as small
// as the service × backend pairs.
type expiries struct {
	mu     sync.Mutex
	period int64
	set    map[string]struct{}
}

// claim reports whether key still needs its expiry in period, and
// records it as given.
func (e *expiries) claim(period int64, key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if period != e.period || e.set == nil {
		e.period, e.set = period, map[string]struct{}{}
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

// Batch runs jobs in one pipelined round trip: pins SET NX, refreshes
// PEXPIRE, one ZADD per backend counted (its EXPIRE once per countExpiry,
// its trim of ended sessions once per countTrimEvery), and for sessions
// that moved one ZREM from their old backend's set.
func (s *RedisStore) Batch(ctx context.Context, jobs []Job) error {
	now := time.Now()
	period := now.UnixNano() / int64(countExpiry)
	counts := map[string][]redis.Z{}
	moved := map[string][]any{}
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
			at := now
			if !j.At.IsZero() && j.At.Before(now) {
				at = j.At // a pin replayed late expires as it would have
			}
			key := countKey(j.Service, j.Backend)
			counts[key] = append(counts[key], redis.Z{Score: float64(at.Add(j.TTL).UnixMilli()), Member: j.ID[:]})
			if j.From != "" && j.From != j.Backend {
				from := countKey(j.Service, j.From)
				moved[from] = append(moved[from], j.ID[:])
			}
			countTTL = max(countTTL, j.TTL)
		}
		trimPeriod := now.UnixNano() / int64(countTrimEvery)
		for key, zs := range counts {
			if s.trims.claim(trimPeriod, key) { // best effort: not forgotten on error
				p.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(now.UnixMilli(), 10))
			}
			p.ZAdd(ctx, key, zs...)
			if s.expiries.claim(period, key) {
				p.Expire(ctx, key, countTTL+2*countExpiry)
				expiring = append(expiring, key)
			}
		}
		for key, ids := range moved {
			p.ZRem(ctx, key, ids...)
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

// Sessions counts the live sessions of each backend of service, in one
// round trip: per backend, ZREMRANGEBYSCORE drops the sessions whose
// expiry passed (the trim happens here, in the background refresh, so no
// other job is needed) and ZCOUNT counts the rest.
//
// The count is exact for what Redis holds: a session counts from its pin
// (its second request, see Affinity.PinNew) until its TTL after its last
// refresh, which is when its pin expires too, and on the backend it was
// last pinned to only. Its errors: the expiry is judged on the reading
// replica's clock, so clock skew between replicas shifts it by as much; a
// session unpinned through the admin API counts until its TTL ends; a
// refresh dropped because the background queue was full makes the session
// (and its pin) expire early.
func (s *RedisStore) Sessions(ctx context.Context, service string, backends []string) (map[string]int64, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cmds := make(map[string]*redis.IntCmd, len(backends))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range backends {
			key := countKey(service, b)
			p.ZRemRangeByScore(ctx, key, "-inf", now)
			cmds[b] = p.ZCount(ctx, key, "("+now, "+inf")
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
