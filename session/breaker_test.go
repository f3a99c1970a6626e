package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
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
		if _, _, err := a.Lookup(ctx, "web", NewID()); err == nil || errors.Is(err, ErrStoreDown) {
			t.Fatalf("err %v; want the store's failure", err)
		}
	}
	if _, _, err := a.Lookup(ctx, "web", NewID()); !errors.Is(err, ErrStoreDown) {
		t.Fatalf("err %v after %d failures; want ErrStoreDown", err, storeTrip)
	}
	// The probe: its client leaves while the store hangs.
	store.set(true, true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, _, err := a.Lookup(pctx, "web", NewID()); done <- err }()
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
		_, _, _ = a.Lookup(ctx, "web", NewID())
	}
	if n := store.count() - before; n != 1 {
		t.Fatalf("%d calls reached the failing store after the cancelled probe; want 1 (the next probe)", n)
	}
}

// Issue 13: the count keys given an expiry were remembered forever (one
// per service × backend × 5-minute period); only the current period's are.
func TestCountExpiriesBounded(t *testing.T) {
	var e expiries
	for bucket := int64(0); bucket < 100; bucket++ {
		for b := range 10 {
			key := countKey("web", string(rune('a'+b)))
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

// blockedStore answers every call while it is up. While down, each Get
// and CompareAndSwap blocks until its context ends, and records the state
// of the breaker of a (set once a exists) it was called under.
type blockedStore struct {
	Store
	a    *Affinity
	down atomic.Bool
	mu   sync.Mutex
	seen []gobreaker.State
}

func (s *blockedStore) block(ctx context.Context) error {
	s.mu.Lock()
	s.seen = append(s.seen, s.a.br.State())
	s.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (s *blockedStore) Get(ctx context.Context, key string) (string, bool, error) {
	if s.down.Load() {
		return "", false, s.block(ctx)
	}
	return s.Store.Get(ctx, key)
}

func (s *blockedStore) CompareAndSwap(ctx context.Context, key, old, new string, ttl time.Duration) (string, error) {
	if s.down.Load() {
		return "", s.block(ctx)
	}
	return s.Store.CompareAndSwap(ctx, key, old, new, ttl)
}

// calls returns the breaker states the store was called under since the
// last calls, and forgets them.
func (s *blockedStore) calls() []gobreaker.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.seen
	s.seen = nil
	return seen
}

// Issue 22: while the store's breaker is open (the store known down), the
// calls that settle a re-pin (the swap, the lookup of a session whose
// re-pin is in doubt) do not wait on the store: they fail at once, the
// re-pin is kept for replay and the request goes on with its pick. Before,
// each waited settleTimeout (100ms) on a store that does not answer.
// gobreaker has no injectable clock: should the breaker's cooldown pass
// before a call (a stalled machine), that call is its probe and may ask
// the store; the attempt is then made again.
func TestSettleFailsFastWhileStoreDown(t *testing.T) {
	for _, tt := range []struct {
		name string
		// settle runs the call that settles a re-pin, after a re-pin of
		// id from web-1 to web-2 that the store did not answer; it
		// returns the backend the request goes to.
		settle func(a *Affinity, id ID) (string, error)
	}{
		{"re-pin", func(a *Affinity, id ID) (string, error) {
			return a.Repin(context.Background(), "web", id, "web-1", "web-3", time.Minute)
		}},
		{"lookup of a re-pin in doubt", func(a *Affinity, id ID) (string, error) {
			b, _, err := a.Lookup(context.Background(), "web", id)
			return b, err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := &blockedStore{Store: NewMemoryStore(100, nil)}
			a := NewAffinity(Options{Store: store, StoreTimeout: time.Millisecond,
				Logger: slog.New(slog.DiscardHandler)})
			store.a = a
			ctx := context.Background()
			id := NewID()
			if _, err := a.Pin(ctx, "web", id, "web-1", time.Minute); err != nil {
				t.Fatal(err)
			}
			store.down.Store(true)
			deadline := time.Now().Add(10 * time.Second)
			for attempt := 1; ; attempt++ {
				for a.StoreUp() { // trip the breaker: storeTrip timeouts
					_, _, _ = a.LookupStore(ctx, "web", id)
				}
				// The re-pin in doubt the lookup settles (the re-pin row makes
				// it again).
				_, _ = a.Repin(ctx, "web", id, "web-1", "web-2", time.Minute)
				store.calls()
				got, err := tt.settle(a, id)
				seen := store.calls()
				for _, s := range seen {
					if s == gobreaker.StateOpen {
						t.Fatalf("attempt %d: the store was called with its breaker open (calls under %v)", attempt, seen)
					}
				}
				if len(seen) > 0 { // the breaker's probe: its cooldown passed
					if time.Now().After(deadline) {
						t.Fatalf("%d attempts, each meeting the breaker half-open", attempt)
					}
					continue
				}
				want := map[string]string{"re-pin": "web-3", "lookup of a re-pin in doubt": "web-2"}[tt.name]
				if got != want || (tt.name == "re-pin") != errors.Is(err, ErrStoreDown) || a.Pending() != 1 {
					t.Fatalf("got %q, err %v, %d pending; want %q, the pick kept for replay", got, err, a.Pending(), want)
				}
				return
			}
		})
	}
}

// len is the number of keys e remembers.
func (e *expiries) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.set)
}
