package session

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func codec(t testing.TB, secrets ...string) *Codec {
	t.Helper()
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	c, err := NewCodec(bs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	oldSecret = "old-secret-0123456789abcdef"
	newSecret = "new-secret-0123456789abcdef"
)

func TestCodecRoundTripAndRotation(t *testing.T) {
	v := Cookie{ID: NewID(), Hint: HintFor("web", "web-1"), Issued: 1_700_000_000}
	old := codec(t, oldSecret)
	s := old.Encode(v)
	if got, ok := old.Decode(s); !ok || got != v {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	rotated := codec(t, newSecret, oldSecret)
	resigned := v
	resigned.OldSecret = true // so Decide reissues it under the new secret
	if got, ok := rotated.Decode(s); !ok || got != resigned {
		t.Fatalf("cookie signed with the old secret during rotation: %+v %v; want %+v", got, ok, resigned)
	}
	if got, ok := rotated.Decode(rotated.Encode(v)); !ok || got != v {
		t.Fatalf("cookie signed with the new secret: %+v %v; want %+v", got, ok, v)
	}
	if _, ok := codec(t, oldSecret).Decode(rotated.Encode(v)); ok {
		t.Fatal("cookie signed with the new secret accepted by a codec without it")
	}
	if _, ok := codec(t, newSecret).Decode(s); ok {
		t.Fatal("cookie signed with a removed secret accepted")
	}
	if _, err := NewCodec([][]byte{[]byte("short")}); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := NewCodec(nil); err == nil {
		t.Fatal("no secret accepted")
	}
}

// Every request's cookie is checked: that costs no allocation, and signing
// one the result string only. Pooled scratch is reused across calls, so
// interleaved encodes and decodes must not see each other's bytes.
func TestCodecAllocations(t *testing.T) {
	c := codec(t, newSecret, oldSecret)
	a := Cookie{ID: NewID(), Hint: 1, Issued: 1}
	b := Cookie{ID: NewID(), Hint: 2, Issued: 2}
	sa, sb := c.Encode(a), c.Encode(b)
	if !raceEnabled {
		if n := testing.AllocsPerRun(100, func() { c.Decode(sa) }); n != 0 {
			t.Errorf("Decode: %v allocations; want 0", n)
		}
		if n := testing.AllocsPerRun(100, func() { c.Encode(a) }); n != 1 {
			t.Errorf("Encode: %v allocations; want 1 (the string)", n)
		}
	}
	for range 100 {
		if got, ok := c.Decode(sa); !ok || got != a {
			t.Fatalf("decode a: %+v %v", got, ok)
		}
		if s := c.Encode(b); s != sb {
			t.Fatalf("encode b changed: %s != %s", s, sb)
		}
	}
}

func TestCodecRejectsTampering(t *testing.T) {
	c := codec(t, oldSecret)
	good := c.Encode(Cookie{ID: NewID(), Hint: 42, Issued: 7})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	// Every single-bit flip anywhere is rejected.
	for i := range raw {
		for bit := range 8 {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			if _, ok := c.Decode(base64.RawURLEncoding.EncodeToString(b)); ok {
				t.Fatalf("bit %d of byte %d flipped: accepted", bit, i)
			}
		}
	}
	for name, v := range map[string]string{
		"empty": "", "truncated": good[:len(good)-1], "extended": good + "A",
		"oversized": strings.Repeat("A", 5000), "bad base64": strings.Repeat("*", len(good)),
		"wrong version": func() string {
			b := append([]byte(nil), raw...)
			b[0] = 2
			return base64.RawURLEncoding.EncodeToString(b)
		}(),
		"unsigned": base64.RawURLEncoding.EncodeToString(make([]byte, len(raw))),
	} {
		if _, ok := c.Decode(v); ok {
			t.Errorf("%s cookie accepted", name)
		}
	}
}

func TestIDs(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b {
		t.Fatal("two random ids equal")
	}
	if got, ok := ParseID(a.String()); !ok || got != a || len(a.String()) != 22 {
		t.Fatalf("ParseID(String()) = %v %v", got, ok)
	}
	if _, ok := ParseID("nope"); ok {
		t.Fatal("bad id parsed")
	}
	if IDFromValue("JSESSIONID-1") != IDFromValue("JSESSIONID-1") || IDFromValue("a") == IDFromValue("b") {
		t.Fatal("IDFromValue not a function of its input")
	}
	if HintFor("web", "a") == HintFor("web", "b") || HintFor("web", "a") == HintFor("api", "a") || HintFor("x", "y") == 0 {
		t.Fatal("hints collide or are zero")
	}
}

func TestMemoryStore(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := NewMemoryStore(3, clock)
	ctx := context.Background()
	if cur, _ := m.SetNX(ctx, "k", "a", time.Minute); cur != "a" {
		t.Fatalf("SetNX on absent: %q", cur)
	}
	if cur, _ := m.SetNX(ctx, "k", "b", time.Minute); cur != "a" {
		t.Fatalf("SetNX on present: %q; want the existing a", cur)
	}
	if cur, _ := m.CompareAndSwap(ctx, "k", "x", "b", time.Minute); cur != "a" {
		t.Fatalf("CAS with a wrong old value: %q; want a unchanged", cur)
	}
	if cur, _ := m.CompareAndSwap(ctx, "k", "a", "b", time.Minute); cur != "b" {
		t.Fatalf("CAS: %q; want b", cur)
	}
	mu.Lock()
	now = now.Add(50 * time.Second)
	mu.Unlock()
	_ = m.Touch(ctx, "k", time.Minute)
	mu.Lock()
	now = now.Add(50 * time.Second)
	mu.Unlock()
	if v, ok, _ := m.Get(ctx, "k"); !ok || v != "b" {
		t.Fatal("touched key expired")
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if _, ok, _ := m.Get(ctx, "k"); ok {
		t.Fatal("key outlived its TTL")
	}
	for _, k := range []string{"1", "2", "3", "4", "5"} {
		_, _ = m.SetNX(ctx, k, "a", time.Minute)
	}
	if m.Len() > 3 {
		t.Fatalf("bounded store holds %d keys; max 3", m.Len())
	}
}

// A session's hits come from the local cache: the store is asked once.
func TestAffinityCachesAndCountsStoreCalls(t *testing.T) {
	store := &countingStore{Store: NewMemoryStore(100, nil)}
	a := NewAffinity(Options{Store: store})
	ctx := context.Background()
	id := NewID()
	if got, _ := a.Pin(ctx, "web", id, "web-1", time.Minute); got != "web-1" {
		t.Fatalf("Pin = %q", got)
	}
	a.cache.flush() // as if another process pinned it
	for range 1000 {
		b, ok, err := a.Lookup(ctx, "web", id)
		if !ok || err != nil || b != "web-1" {
			t.Fatalf("Lookup = %q %v %v", b, ok, err)
		}
	}
	if n := store.gets(); n != 1 {
		t.Fatalf("1000 lookups asked the store %d times; want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = a.Lookup(ctx, "web", id) }); n != 0 {
		t.Fatalf("cache hit allocates %v times", n)
	}
}

// With the store down, pins are answered from the cache, kept for replay,
// and the breaker stops asking the store.
func TestAffinityStoreDown(t *testing.T) {
	store := &countingStore{Store: NewMemoryStore(100, nil)}
	a := NewAffinity(Options{Store: store, StoreTimeout: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	store.setDown(true)
	id := NewID()
	if got, err := a.Pin(ctx, "web", id, "web-2", time.Minute); got != "web-2" || err != nil {
		t.Fatalf("Pin with the store down: %q %v; want web-2 and no error", got, err)
	}
	a.cache.flush()
	if b, ok, _ := a.Lookup(ctx, "web", id); !ok || b != "web-2" {
		t.Fatalf("pending pin not served: %q %v", b, ok)
	}
	calls := store.calls()
	for range 100 {
		_, _, _ = a.Lookup(ctx, "web", NewID())
	}
	if n := store.calls() - calls; n > 3 {
		t.Fatalf("breaker open, yet 100 lookups made %d store calls", n)
	}
	if a.StoreUp() {
		t.Fatal("StoreUp while the breaker is open")
	}
	store.setDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for a.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("pending pin never replayed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !a.StoreUp() {
		t.Fatal("StoreUp false after the store came back and the pins were replayed")
	}
	if v, ok, _ := store.Store.Get(ctx, storeKey("web", id)); !ok || v != "web-2" {
		t.Fatalf("replayed pin = %q %v", v, ok)
	}
	cancel()
	<-done
}

// A new session's pin is served from the cache at once and reaches the
// store in the background; with the store down it waits for replay.
func TestAffinityPinNew(t *testing.T) {
	store := &countingStore{Store: NewMemoryStore(100, nil)}
	a := NewAffinity(Options{Store: store, StoreTimeout: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	stored := func(id ID, want string) func() bool {
		return func() bool {
			v, ok, _ := store.Store.Get(ctx, storeKey("web", id))
			return ok && v == want
		}
	}

	id, once := NewID(), NewID()
	a.PinNew(ctx, "web", once, "web-1", time.Minute)
	a.PinNew(ctx, "web", id, "web-1", time.Minute)
	gets := store.gets()
	if b, ok, _ := a.Lookup(ctx, "web", id); !ok || b != "web-1" || store.gets() != gets {
		t.Fatalf("Lookup right after PinNew = %q %v, %d store reads; want web-1 from the cache", b, ok, store.gets()-gets)
	}
	a.Touch("web", id, time.Minute) // its second request
	eventually(t, "the pin in the store", stored(id, "web-1"))
	// Jobs run in order: the store has the session that came back, and
	// not the one that never did.
	if _, ok, _ := store.Store.Get(ctx, storeKey("web", once)); ok || store.calls() != 1 {
		t.Fatalf("a session seen once is in the store (%v), or cost it %d calls; want none but the returning one's", ok, store.calls())
	}

	store.setDown(true)
	down := NewID()
	a.PinNew(ctx, "web", down, "web-2", time.Minute)
	a.Touch("web", down, time.Minute)
	eventually(t, "the pin kept for replay", func() bool { return a.Pending() == 1 })
	store.setDown(false)
	eventually(t, "the pin replayed", stored(down, "web-2"))
	cancel()
	<-done
}

// eventually polls cond until it holds, failing after 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAffinityRepinConverges(t *testing.T) {
	store := NewMemoryStore(100, nil)
	a1, a2 := NewAffinity(Options{Store: store}), NewAffinity(Options{Store: store})
	ctx := context.Background()
	id := NewID()
	_, _ = a1.Pin(ctx, "web", id, "web-1", time.Minute)
	var got [2]string
	var wg sync.WaitGroup
	for i, a := range []*Affinity{a1, a2} {
		wg.Go(func() { got[i], _ = a.Repin(ctx, "web", id, "web-1", []string{"web-2", "web-3"}[i], time.Minute) })
	}
	wg.Wait()
	if got[0] != got[1] {
		t.Fatalf("racing re-pins ended on %q and %q", got[0], got[1])
	}
	if err := a1.Unpin(ctx, "web", id, time.Minute); err != nil {
		t.Fatal(err)
	}
	a2.cache.flush()
	if _, ok, err := a2.Lookup(ctx, "web", id); ok || err != ErrUnpinned {
		t.Fatalf("unpinned session: found %v, %v; want ErrUnpinned", ok, err)
	}
	// A re-pin replayed or racing after the unpin does not bring it back.
	if _, err := a2.Repin(ctx, "web", id, got[0], "web-4", time.Minute); err != ErrUnpinned {
		t.Fatalf("a re-pin after the unpin: %v; want ErrUnpinned", err)
	}
}

func TestStoreKeyRoundTrip(t *testing.T) {
	id := NewID()
	k, ok := parseStoreKey(storeKey("my-service", id))
	if !ok || k.service != "my-service" || k.id != id {
		t.Fatalf("parseStoreKey = %+v %v", k, ok)
	}
	if _, ok := parseStoreKey("l:n:web:x:1"); ok {
		t.Fatal("count key parsed as a session key")
	}
}

// countingStore wraps a Store, counts calls and can fail them all.
type countingStore struct {
	Store
	mu      sync.Mutex
	n, getN int
	down    bool
}

func (c *countingStore) setDown(d bool) { c.mu.Lock(); c.down = d; c.mu.Unlock() }
func (c *countingStore) calls() int     { c.mu.Lock(); defer c.mu.Unlock(); return c.n }
func (c *countingStore) gets() int      { c.mu.Lock(); defer c.mu.Unlock(); return c.getN }

func (c *countingStore) check(get bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if get {
		c.getN++
	}
	if c.down {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *countingStore) Get(ctx context.Context, key string) (string, bool, error) {
	if err := c.check(true); err != nil {
		return "", false, err
	}
	return c.Store.Get(ctx, key)
}

func (c *countingStore) SetNX(ctx context.Context, key, b string, ttl time.Duration) (string, error) {
	if err := c.check(false); err != nil {
		return "", err
	}
	return c.Store.SetNX(ctx, key, b, ttl)
}

// A client opening sessions without end cannot grow the local cache (or
// the replay queue) past their bounds.
func TestAffinityMemoryBounded(t *testing.T) {
	store := &countingStore{Store: NewMemoryStore(1_000_000, nil)}
	a := NewAffinity(Options{Store: store, CacheSize: 1000, MaxPending: 500})
	ctx := context.Background()
	for range 20_000 {
		_, _ = a.Pin(ctx, "web", NewID(), "web-1", time.Minute)
	}
	if n := a.cache.len(); n > 64*max(1000/64, 16) {
		t.Fatalf("cache holds %d entries after 20,000 sessions; bound 1000", n)
	}
	store.setDown(true)
	for range 5_000 {
		_, _ = a.Pin(ctx, "web", NewID(), "web-1", time.Minute)
	}
	if n := a.Pending(); n > 500 {
		t.Fatalf("%d pins pending replay; bound 500", n)
	}
}

func TestParseRedisURL(t *testing.T) {
	c, err := ParseRedisURL("rediss://latch:s3cret-pass@redis.example:6380/2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.TLSConfig == nil || o.Username != "latch" || o.Password != "s3cret-pass" || o.DB != 2 || o.Addr != "redis.example:6380" {
		t.Fatalf("rediss URL parsed as %+v", o)
	}
	if o.ReadTimeout != 100*time.Millisecond || o.DialTimeout != 200*time.Millisecond {
		t.Fatalf("timeouts %v/%v; want latch's short defaults", o.DialTimeout, o.ReadTimeout)
	}
	c2, _ := ParseRedisURL("redis://h:1/0?read_timeout=2s")
	defer c2.Close()
	if got := c2.(*redis.Client).Options().ReadTimeout; got != 2*time.Second {
		t.Fatalf("URL's read_timeout %v ignored", got)
	}
	cl, err := ParseRedisURL("redis://h1:1,h2:2,h3:3")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if addrs := cl.(*redis.ClusterClient).Options().Addrs; len(addrs) != 3 {
		t.Fatalf("cluster addrs %v; want 3", addrs)
	}
	_, err = ParseRedisURL("redis://user:hunter2@host:notaport/0")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL error %v: want an error that does not show the password", err)
	}
}

// len counts the cached entries of every shard (the bound's test).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
