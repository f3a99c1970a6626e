package gateway

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/session"
)

// blockingStore is a memory store that, once blocked, holds every call
// until the test ends or the call's context ends (the session layer's
// timeout, as go-redis honours it). It counts its calls, and those made
// from inside the picker's Pick, from the resolve and from a re-pin's
// settling, by the functions on the caller's stack (store calls run on the
// caller's goroutine). Sessions (the live-session counts) is counted apart
// and never blocks.
type blockingStore struct {
	*session.MemoryStore
	blocked atomic.Bool
	end     chan struct{} // closed when the test ends
	calls   atomic.Int64  // every call but Sessions
	counts  atomic.Int64  // Sessions calls

	mu      sync.Mutex
	callers map[string]int // "pick", "resolve", "settle": calls seen from there
}

func newBlockingStore(t testing.TB) *blockingStore {
	s := &blockingStore{MemoryStore: session.NewMemoryStore(1000, nil), end: make(chan struct{}), callers: map[string]int{}}
	t.Cleanup(func() { close(s.end) })
	return s
}

// called notes the caller and, while blocked, waits for the test's end
// or ctx's.
func (s *blockingStore) called(ctx context.Context) error {
	s.calls.Add(1)
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	seen := map[string]bool{}
	for {
		f, more := frames.Next()
		for _, c := range []struct{ name, fn string }{
			{"pick", "gateway/affinity.(*Session).Pick"},
			{"resolve", "gateway/affinity.(*Session).Resolve"},
			{"settle", "gateway/affinity.(*Session).Settle"},
		} {
			if strings.HasSuffix(f.Function, c.fn) && !seen[c.name] {
				seen[c.name] = true
				s.mu.Lock()
				s.callers[c.name]++
				s.mu.Unlock()
			}
		}
		if !more {
			break
		}
	}
	if !s.blocked.Load() {
		return nil
	}
	select {
	case <-s.end:
		return context.Canceled
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *blockingStore) count(from string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callers[from]
}

func (s *blockingStore) Sessions(ctx context.Context, service string, backends []string) (map[string]int64, error) {
	s.counts.Add(1)
	return s.MemoryStore.Sessions(ctx, service, backends)
}

func (s *blockingStore) Get(ctx context.Context, key string) (string, bool, error) {
	if err := s.called(ctx); err != nil {
		return "", false, err
	}
	return s.MemoryStore.Get(ctx, key)
}

func (s *blockingStore) SetNX(ctx context.Context, key, backendID string, ttl time.Duration) (string, error) {
	if err := s.called(ctx); err != nil {
		return "", err
	}
	return s.MemoryStore.SetNX(ctx, key, backendID, ttl)
}

func (s *blockingStore) CompareAndSwap(ctx context.Context, key, old, new string, ttl time.Duration) (string, error) {
	if err := s.called(ctx); err != nil {
		return "", err
	}
	return s.MemoryStore.CompareAndSwap(ctx, key, old, new, ttl)
}

func (s *blockingStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.called(ctx); err != nil {
		return err
	}
	return s.MemoryStore.Touch(ctx, key, ttl)
}

func (s *blockingStore) Tombstone(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.called(ctx); err != nil {
		return err
	}
	return s.MemoryStore.Tombstone(ctx, key, ttl)
}

// Issue 24: forward's picker has no path to the session store. With a
// store whose every call blocks, a pinned request, a re-pinned one and a
// restored one (a cookie this replica never saw) are all answered: the
// resolve and the re-pin's compare-and-swap time out (the session layer's
// timeouts), the local cache and the cookie's hint keep affinity, as
// DESIGN's Redis-down rules say. And no store call came from inside Pick,
// while the re-pin's and the resolve's calls, counted the same way, did
// reach the store from Settle and Resolve.
func TestPickerNeverCallsTheStore(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	store := newBlockingStore(t)
	codec := testCodec(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	aff := session.NewAffinity(session.Options{Store: store, Codec: codec, Logger: log})
	tg := startGatewayWith(t, nil, aff, []discovery.Backend{a.backend(), b.backend()})

	// A session pinned on a while the store answers (its second request
	// stores the pin).
	var cookie, pinned string
	for pinned != "a" {
		pinned, _, cookie = tg.get(t, "/", "")
	}
	if got, status, _ := tg.get(t, "/", cookie); got != "a" || status != 200 {
		t.Fatalf("second request: %s %d; want a", got, status)
	}
	c, ok := codec.Decode(strings.TrimPrefix(cookie, "latch="))
	if !ok {
		t.Fatalf("cookie %q does not decode", cookie)
	}
	waitUntil(t, "the pin stored", func() bool {
		b, found, _ := aff.LookupStore(context.Background(), "web", c.ID)
		return found && b == "a"
	})
	// A session this replica never saw, its cookie's hint naming b.
	unseen := func() string {
		return "latch=" + codec.Encode(session.Cookie{ID: session.NewID(), Hint: session.HintFor("web", "b"), Issued: uint32(time.Now().Unix())})
	}
	if got, status, _ := tg.get(t, "/", unseen()); got != "b" || status != 200 {
		t.Fatalf("restored request: %s %d; want b", got, status)
	}

	store.blocked.Store(true)
	if got, status, _ := tg.get(t, "/", cookie); got != "a" || status != 200 {
		t.Fatalf("pinned request, store blocked: %s %d; want a", got, status)
	}

	// a fails its checks: the session is re-pinned to b, the
	// compare-and-swap timing out.
	tg.static.Set("web", []discovery.Backend{{ID: "a", Service: "web", Addr: a.addr(), Weight: 1, Health: discovery.Critical}, b.backend()})
	waitUntil(t, "a critical", func() bool {
		set := firstRoute(tg.g).Set()
		return set != nil && set.Lookup("a") != nil && set.Lookup("a").Health == discovery.Critical
	})
	got, status, repinned := tg.get(t, "/", cookie)
	if got != "b" || status != 200 || repinned == "" {
		t.Fatalf("re-pinned request, store blocked: %s %d cookie %q; want b and a new cookie", got, status, repinned)
	}
	if got, status, _ := tg.get(t, "/", repinned); got != "b" || status != 200 {
		t.Fatalf("after the re-pin, store blocked: %s %d; want b", got, status)
	}

	// Another session this replica never saw: the store cannot say where
	// it is pinned, the cookie's hint restores it.
	if got, status, _ := tg.get(t, "/", unseen()); got != "b" || status != 200 {
		t.Fatalf("restored request, store blocked: %s %d; want b", got, status)
	}

	if n := store.count("pick"); n != 0 {
		t.Fatalf("%d store calls from inside Pick; want none", n)
	}
	if store.count("settle") == 0 || store.count("resolve") == 0 {
		t.Fatalf("store calls from Settle %d, from Resolve %d; want the re-pin's and the resolves' counted", store.count("settle"), store.count("resolve"))
	}
}
