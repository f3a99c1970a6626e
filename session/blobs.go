package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Blobs is a small store of named byte blobs in Redis with named locks,
// shared by every replica: gateway/acme keeps ACME accounts, keys and
// certificates in it (tls.acme.storage: redis), and the lock makes one
// replica at a time obtain or renew a certificate. Keys are paths
// ("certificates/ca/example.com/example.com.crt"); a path that prefixes
// other keys is a directory. Missing keys are fs.ErrNotExist.
//
// Every key carries one hash tag, so that a Redis Cluster keeps them in
// one slot. Each blob is a hash (value, modified); an index (a sorted set
// of every path, all of score 0, read by lexical range) lists them.
// Methods are safe for concurrent use.
type Blobs struct {
	c      redis.UniversalClient
	prefix string // "{latch-acme}:"
	lease  time.Duration

	mu    sync.Mutex
	locks map[string]heldLock // by name
}

// heldLock is a lock this process holds: its token and its lease keeper.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// NewBlobs keeps blobs under the hash tag {name} (e.g. "latch-acme").
func NewBlobs(c redis.UniversalClient, name string) *Blobs {
	return &Blobs{c: c, prefix: "{" + name + "}:", lease: 30 * time.Second, locks: map[string]heldLock{}}
}

func (b *Blobs) blobKey(path string) string { return b.prefix + "blob:" + path }
func (b *Blobs) indexKey() string           { return b.prefix + "index" }
func (b *Blobs) lockKey(name string) string { return b.prefix + "lock:" + name }

// Store writes value at path.
func (b *Blobs) Store(ctx context.Context, path string, value []byte) error {
	_, err := b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, b.blobKey(path), "value", value, "modified", time.Now().UnixNano())
		p.ZAdd(ctx, b.indexKey(), redis.Z{Member: path})
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing %s in redis: %w", path, err)
	}
	return nil
}

// Load reads the value at path.
func (b *Blobs) Load(ctx context.Context, path string) ([]byte, error) {
	v, err := b.c.HGet(ctx, b.blobKey(path), "value").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s from redis: %w", path, err)
	}
	return v, nil
}

// under lists every path below dir (dir "" : every path).
func (b *Blobs) under(ctx context.Context, dir string) ([]string, error) {
	lo, hi := "-", "+"
	if dir = strings.Trim(dir, "/"); dir != "" {
		lo, hi = "["+dir+"/", "["+dir+"/\xff"
	}
	paths, err := b.c.ZRangeByLex(ctx, b.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return nil, fmt.Errorf("listing %s in redis: %w", dir, err)
	}
	return paths, nil
}

// Delete removes path, and everything below it when it is a directory.
// A missing path is no error.
func (b *Blobs) Delete(ctx context.Context, path string) error {
	below, err := b.under(ctx, path)
	if err != nil {
		return err
	}
	paths := append(below, strings.Trim(path, "/"))
	_, err = b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range paths {
			p.Del(ctx, b.blobKey(k))
			p.ZRem(ctx, b.indexKey(), k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting %s in redis: %w", path, err)
	}
	return nil
}

// Exists reports whether path is a blob or a directory (false on errors).
func (b *Blobs) Exists(ctx context.Context, path string) bool {
	if n, err := b.c.Exists(ctx, b.blobKey(path)).Result(); err == nil && n > 0 {
		return true
	}
	below, err := b.under(ctx, path)
	return err == nil && len(below) > 0
}

// List names the paths in dir: every one below it when recursive, else
// its immediate children (blobs and directories).
func (b *Blobs) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	below, err := b.under(ctx, dir)
	if err != nil {
		return nil, err
	}
	if len(below) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	}
	if recursive {
		return below, nil
	}
	base := strings.Trim(dir, "/")
	if base != "" {
		base += "/"
	}
	var out []string
	for _, p := range below {
		child, _, _ := strings.Cut(strings.TrimPrefix(p, base), "/")
		if child = base + child; len(out) == 0 || out[len(out)-1] != child {
			out = append(out, child) // the index is sorted: children come together
		}
	}
	return out, nil
}

// BlobInfo describes a path (Stat).
type BlobInfo struct {
	Modified time.Time
	Size     int64
	Dir      bool
}

// Stat describes path.
func (b *Blobs) Stat(ctx context.Context, path string) (BlobInfo, error) {
	var size *redis.IntCmd
	var modified *redis.StringCmd
	_, err := b.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		size = p.HStrLen(ctx, b.blobKey(path), "value")
		modified = p.HGet(ctx, b.blobKey(path), "modified")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return BlobInfo{}, fmt.Errorf("stat %s in redis: %w", path, err)
	}
	if ns, err := strconv.ParseInt(modified.Val(), 10, 64); err == nil {
		return BlobInfo{Modified: time.Unix(0, ns), Size: size.Val()}, nil
	}
	if below, err := b.under(ctx, path); err == nil && len(below) > 0 {
		return BlobInfo{Dir: true}, nil
	}
	return BlobInfo{}, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
}

// Redis scripts for locks held by token: renew and release only our own.
var (
	renewLock  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	unlockLock = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// Lock takes the lock name (SET NX with a lease), waiting while another
// holder has it, until ctx ends. While held, the lease is renewed; a
// holder that dies loses it when the lease runs out.
func (b *Blobs) Lock(ctx context.Context, name string) error {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	wait := time.NewTicker(250 * time.Millisecond)
	defer wait.Stop()
	for {
		ok, err := b.c.SetNX(ctx, b.lockKey(name), token, b.lease).Result()
		if err == nil && ok {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("taking lock %s: %w", name, ctx.Err())
		case <-wait.C:
		}
	}
	keep, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := heldLock{token: token, stop: stop, done: make(chan struct{})}
	go func() { // the lease keeper; Unlock stops and awaits it
		defer close(h.done)
		t := time.NewTicker(b.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-keep.Done():
				return
			case <-t.C:
				_ = renewLock.Run(keep, b.c, []string{b.lockKey(name)}, token, b.lease.Milliseconds()).Err()
			}
		}
	}()
	b.mu.Lock()
	b.locks[name] = h
	b.mu.Unlock()
	return nil
}

// Unlock releases the lock name taken by Lock.
func (b *Blobs) Unlock(ctx context.Context, name string) error {
	b.mu.Lock()
	h, ok := b.locks[name]
	delete(b.locks, name)
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("unlocking %s: not held", name)
	}
	h.stop()
	<-h.done
	if err := unlockLock.Run(ctx, b.c, []string{b.lockKey(name)}, h.token).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("unlocking %s in redis: %w", name, err)
	}
	return nil
}
