package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// hangingStore fails every Get while down; while hang is set, a Get
// blocks until its context ends.
type hangingStore struct {
	Store
	mu      sync.Mutex
	down    bool
	hang    bool
	gets    int
	started chan struct{}
}

func (h *hangingStore) Get(ctx context.Context, key string) (string, bool, error) {
	h.mu.Lock()
	h.gets++
	down, hang := h.down, h.hang
	h.mu.Unlock()
	if hang {
		h.started <- struct{}{}
		<-ctx.Done()
		return "", false, ctx.Err()
	}
	if down {
		return "", false, errors.New("connection refused")
	}
	return h.Store.Get(ctx, key)
}

func (h *hangingStore) set(down, hang bool) { h.mu.Lock(); h.down, h.hang = down, hang; h.mu.Unlock() }
func (h *hangingStore) count() int          { h.mu.Lock(); defer h.mu.Unlock(); return h.gets }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Issue 13: the store's breaker counted context.Canceled as a success: a
// client leaving during the half-open probe closed it and logged a false
// "reachable again".
func TestStoreBreakerIgnoresCanceledProbe(t *testing.T) {
	store := &hangingStore{Store: NewMemoryStore(100, nil), down: true, started: make(chan struct{}, 1)}
	var logs syncBuffer
	a := NewAffinity(Options{Store: store, StoreTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	for range storeTrip {
		if _, _, _, err := a.Lookup(ctx, "web", NewID()); err == nil || errors.Is(err, ErrStoreDown) {
			t.Fatalf("err %v; want the store's failure", err)
		}
	}
	if _, _, _, err := a.Lookup(ctx, "web", NewID()); !errors.Is(err, ErrStoreDown) {
		t.Fatalf("err %v after %d failures; want ErrStoreDown", err, storeTrip)
	}
	// The probe: its client leaves while the store hangs.
	store.set(true, true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, _, _, err := a.Lookup(pctx, "web", NewID()); done <- err }()
		select {
		case <-store.started:
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("probe err %v; want context.Canceled", err)
			}
		case err := <-done:
			cancel()
			if !errors.Is(err, ErrStoreDown) || time.Now().After(deadline) {
				t.Fatalf("err %v while waiting for the probe", err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	if strings.Contains(logs.String(), "reachable again") {
		t.Fatalf("a cancelled probe logged the store as reachable:\n%s", logs.String())
	}
	// Still failing: the next probe fails and reopens the breaker at once
	// (a closed breaker would let storeTrip more calls reach the store).
	store.set(true, false)
	before := store.count()
	for range storeTrip {
		_, _, _, _ = a.Lookup(ctx, "web", NewID())
	}
	if n := store.count() - before; n != 1 {
		t.Fatalf("%d calls reached the failing store after the cancelled probe; want 1 (the next probe)", n)
	}
}

// Issue 13: the count keys given an expiry were remembered forever (one
// per service × backend × 5-minute bucket); only the current bucket's are.
func TestCountExpiriesBounded(t *testing.T) {
	var e expiries
	for bucket := int64(0); bucket < 100; bucket++ {
		for b := range 10 {
			key := countKey("web", string(rune('a'+b)), bucket)
			if !e.claim(bucket, key) {
				t.Fatalf("bucket %d key %s claimed twice", bucket, key)
			}
			if e.claim(bucket, key) {
				t.Fatalf("bucket %d key %s given two expiries", bucket, key)
			}
		}
	}
	if n := e.len(); n != 10 {
		t.Fatalf("%d keys remembered; want the current bucket's 10", n)
	}
}

// Issue 13: go-redis's own log lines ("redis: ... failed to dial") bypassed
// slog and broke the JSON log stream.
func TestRedisLogThroughSlog(t *testing.T) {
	var logs syncBuffer
	LogRedisTo(slog.New(slog.NewJSONHandler(&logs, nil)))
	defer LogRedisTo(slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := ParseRedisURL("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "dial") {
		if time.Now().After(deadline) {
			t.Fatalf("no dial failure logged through slog; log: %q", logs.String())
		}
		_ = c.Ping(context.Background()).Err()
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"msg":"redis client"`) {
			t.Fatalf("log line %q; want a JSON record", line)
		}
	}
}
