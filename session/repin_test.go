package session

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lossyStore is a store whose compare-and-swap answers time out while
// lose is set: the swap runs (lands) or not, but its caller hears nothing.
type lossyStore struct {
	Store
	lose, land atomic.Bool
}

func (l *lossyStore) CompareAndSwap(ctx context.Context, key, old, new string, ttl time.Duration) (string, error) {
	if !l.lose.Load() {
		return l.Store.CompareAndSwap(ctx, key, old, new, ttl)
	}
	if l.land.Load() {
		_, _ = l.Store.CompareAndSwap(ctx, key, old, new, ttl)
	}
	return "", context.DeadlineExceeded
}

// apart counts the sessions the two replicas send to different backends.
func apart(t *testing.T, a, b *Affinity, ids []ID) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		x, _, errA := a.Lookup(context.Background(), "web", id)
		y, _, errB := b.Lookup(context.Background(), "web", id)
		if errA != nil || errB != nil {
			t.Fatalf("lookup: %v %v", errA, errB)
		}
		if x != y {
			n++
		}
	}
	return n
}

// Issue 12: two replicas re-pin the same sessions at once; one of them
// does not hear its store's answer. Its pick must not win over the
// other's, neither in its cache nor when it is replayed: both end on one
// backend per session. On separate stores (no compare-and-swap between
// the replicas) the same check fails.
func TestRepinRaceOneBackend(t *testing.T) {
	for _, tc := range []struct {
		name       string
		separate   bool
		lose, land bool
		some       bool // sessions apart wanted
	}{
		{name: "shared store"},
		{name: "shared store, b's swap unanswered", lose: true},
		{name: "shared store, b's swap landed unanswered", lose: true, land: true},
		{name: "separate stores", separate: true, some: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := NewMemoryStore(1000, nil)
			bStore := &lossyStore{Store: shared}
			if tc.separate {
				bStore.Store = NewMemoryStore(1000, nil)
			}
			a := NewAffinity(Options{Store: shared})
			b := NewAffinity(Options{Store: bStore, StoreTimeout: time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			wg.Go(func() { _ = a.Run(ctx) })
			wg.Go(func() { _ = b.Run(ctx) })

			ids := make([]ID, 100)
			for i := range ids {
				ids[i] = NewID()
				_, _ = a.Pin(ctx, "web", ids[i], "web-1", time.Minute)
				_, _ = b.Pin(ctx, "web", ids[i], "web-1", time.Minute)
			}
			bStore.lose.Store(tc.lose)
			bStore.land.Store(tc.land)
			for i, id := range ids {
				// b's re-pin first half the time, so a's meets its landed swap.
				first, second := a, b
				if i%2 == 0 {
					first, second = b, a
				}
				pick := map[*Affinity]string{a: "web-2", b: "web-3"}
				_, _ = first.Repin(ctx, "web", id, "web-1", pick[first], time.Minute)
				_, _ = second.Repin(ctx, "web", id, "web-1", pick[second], time.Minute)
			}
			bStore.lose.Store(false)
			eventually(t, "b's re-pins replayed", func() bool { return b.Pending() == 0 })
			n := apart(t, a, b, ids)
			if tc.some != (n > 0) {
				t.Fatalf("%d of %d sessions on different backends through the two replicas", n, len(ids))
			}
			if !tc.separate {
				for _, id := range ids {
					v, _, _ := shared.Get(ctx, storeKey("web", id))
					if x, _, _ := a.Lookup(ctx, "web", id); x != v {
						t.Fatalf("store holds %q, the replicas send the session to %q", v, x)
					}
				}
			}
		})
	}
}
