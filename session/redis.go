package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is the Store shared by every latch replica. Values are backend
// ids; keys are short binary strings (see Affinity) to keep Redis memory per
// session small.
type RedisStore struct {
	c        redis.UniversalClient
	expiries expiries // count keys given their expiry (redisjobs.go)
	trims    expiries // count keys trimmed of ended sessions (redisjobs.go)
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore wraps a go-redis client.
func NewRedisStore(c redis.UniversalClient) *RedisStore { return &RedisStore{c: c} }

// ParseRedisURL builds a client from a redis:// or rediss:// URL as go-redis
// parses it (user, password, db, and options such as dial_timeout in the
// query). Three forms:
//
//   - redis://host:6379/0: one server;
//   - redis://s1:26379,s2:26379,s3:26379/0?master_name=mymaster: Redis
//     Sentinel (the hosts are sentinels; the URL's user and password are
//     the sentinels', password= in the query is the primary's);
//   - redis://h1:7000,h2:7001,h3:7002: Redis Cluster (seed nodes).
//
// The timeouts default short: Redis trouble must cost a request
// milliseconds. The Sentinel client does not retry (the session layer has
// its own breaker, replay queue and fallbacks); the Cluster client follows
// MOVED/ASK redirects, as it must, and re-reads the slot map every second
// while in use.
func ParseRedisURL(url string) (redis.UniversalClient, error) {
	u, several := hostList(url)
	if strings.Contains(u, "master_name=") {
		opts, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fmt.Errorf("parsing sentinel URL: %w", redacted(err))
		}
		shorten(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, url)
		opts.MaxRetries = -1 // none: the session layer has its own fallbacks
		opts.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(opts), nil
	}
	if several {
		opts, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fmt.Errorf("parsing cluster URL: %w", redacted(err))
		}
		shorten(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, url)
		opts.ContextTimeoutEnabled = true
		// go-redis reloads the slot map on MOVED, or when it is older than
		// this (default 60s). After a primary dies no MOVED comes within
		// latch's short timeouts: every call for its slots would go to the
		// dead node for a minute. One CLUSTER SLOTS a second (only while
		// commands run) finds the promoted replica within a second or two.
		opts.ClusterStateReloadInterval = time.Second
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, redacted(err)
	}
	shorten(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, url)
	opts.MaxRetries = 0 // the session layer has its own breaker and fallbacks
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// hostList turns a URL with several hosts into go-redis's form:
// redis://h1:p1,h2:p2/db?opts → redis://h1:p1/db?opts&addr=h2:p2.
func hostList(url string) (string, bool) {
	first, rest, several := strings.Cut(url, ",")
	if !several {
		return url, false
	}
	more, query, _ := strings.Cut(rest, "?")
	more = strings.NewReplacer("rediss://", "", "redis://", "").Replace(more)
	path := ""
	if i := strings.IndexByte(more, '/'); i >= 0 {
		more, path = more[:i], more[i:]
	}
	u := first + path + "?" + query
	for _, a := range strings.Split(more, ",") {
		u += "&addr=" + a
	}
	return u, true
}

// shorten sets latch's defaults unless the URL set the timeouts itself.
func shorten(dial, read, write *time.Duration, url string) {
	if !strings.Contains(url, "dial_timeout=") {
		*dial = 200 * time.Millisecond
	}
	if !strings.Contains(url, "read_timeout=") {
		*read = 100 * time.Millisecond
	}
	if !strings.Contains(url, "write_timeout=") {
		*write = 100 * time.Millisecond
	}
}

// redacted drops the URL (and its password) from go-redis parse errors.
func redacted(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 {
		return errors.New("invalid redis URL")
	}
	return errors.New(msg)
}

// Get is one GET: the backend pinned to key, ok=false when none is.
func (s *RedisStore) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := s.c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// SetNX is one SET key value NX PX ttl when the key is free, as it is for
// every new session. Only when another pin won (a replayed pin, a learned
// application session) does a GET follow to read the winner. (SET NX GET
// would do both in one command, but its nil reply for the common case is
// an error to go-redis, which classifies it at a dozen allocations.)
func (s *RedisStore) SetNX(ctx context.Context, key, backend string, ttl time.Duration) (string, error) {
	err := s.c.SetArgs(ctx, key, backend, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if err == nil {
		return backend, nil // it was absent: ours is stored
	}
	if !errors.Is(err, redis.Nil) {
		return "", err
	}
	old, err := s.c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		// The winner expired between the two commands: try once more.
		if err = s.c.SetArgs(ctx, key, backend, redis.SetArgs{Mode: "NX", TTL: ttl}).Err(); err == nil {
			return backend, nil
		}
	}
	if err != nil {
		return "", err
	}
	return old, nil
}

// casScript swaps a pin when it still holds the expected value ("" =
// absent) and publishes an invalidation for the other replicas' caches.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('PUBLISH', ARGV[4], KEYS[1])
  return ARGV[2]
end
if cur == false then return '' end
return cur`)

// InvalidationChannel carries the keys whose pins changed.
const InvalidationChannel = "latch:invalidate"

// CompareAndSwap swaps key's pin from old ("" = absent) to new in one
// script (casScript), which also publishes an invalidation on
// InvalidationChannel; it returns the value now stored.
func (s *RedisStore) CompareAndSwap(ctx context.Context, key, old, new string, ttl time.Duration) (string, error) {
	return casScript.Run(ctx, s.c, []string{key}, old, new, ttl.Milliseconds(), InvalidationChannel).Text()
}

// Touch is one PEXPIRE: key's pin lives ttl from now (nothing when the
// key is gone).
func (s *RedisStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return s.c.PExpire(ctx, key, ttl).Err()
}

// Tombstone replaces the pin by the tombstone and publishes an
// invalidation, in one transaction.
func (s *RedisStore) Tombstone(ctx context.Context, key string, ttl time.Duration) error {
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, tombstone, ttl)
		p.Publish(ctx, InvalidationChannel, key)
		return nil
	})
	return err
}

// redisLog hands go-redis's own log lines ("redis: ... failed to dial") to
// slog, so they join the process's log stream (JSON included) at Warn.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, "redis client", "line", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// LogRedisTo routes go-redis's log (process-wide in go-redis) through l.
func LogRedisTo(l *slog.Logger) { redis.SetLogger(redisLog{l}) }
