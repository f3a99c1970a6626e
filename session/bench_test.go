package session

import (
	"context"
	"testing"
	"time"
)

// The session work on every request: the cookie's HMAC check, and for a
// steady session a cache hit (no store call). For a new one: an id, a
// signed cookie, and PinNew (cached now, written in the background).
//
//	go test -run '^$' -bench . -benchmem ./session/

func BenchmarkCodec(b *testing.B) {
	c, err := NewCodec([][]byte{[]byte("bench-secret-0123456789abcdef")})
	if err != nil {
		b.Fatal(err)
	}
	v := c.Encode(Cookie{ID: NewID(), Hint: HintFor("web", "web-1"), Issued: uint32(time.Now().Unix())})
	b.Run("encode", func(b *testing.B) {
		ck := Cookie{ID: NewID(), Hint: 42, Issued: 1}
		b.ReportAllocs()
		for b.Loop() {
			_ = c.Encode(ck)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.Decode(v); !ok {
				b.Fatal("decode failed")
			}
		}
	})
	b.Run("decode-forged", func(b *testing.B) {
		last := byte('A') // a different last character: a tag off by one symbol
		if v[len(v)-1] == 'A' {
			last = 'B'
		}
		forged := v[:len(v)-1] + string(last)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.Decode(forged); ok {
				b.Fatal("forged cookie accepted")
			}
		}
	})
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID()
	}
}

// A steady session: the pin is in the local cache, the store is not asked.
func BenchmarkLookupCached(b *testing.B) {
	store := &countingStore{Store: NewMemoryStore(1<<20, nil)}
	a := NewAffinity(Options{Store: store})
	ctx := context.Background()
	ids := make([]ID, 10_000)
	for i := range ids {
		ids[i] = NewID()
		if _, err := a.Pin(ctx, "web", ids[i], "web-1", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	calls := store.calls()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, _ := a.Lookup(ctx, "web", ids[i%len(ids)]); !ok {
			b.Fatal("pin not found")
		}
		i++
	}
	if n := store.calls() - calls; n != 0 {
		b.Fatalf("%d store calls for cached sessions; want 0", n)
	}
}

// A new session: cached at once, the store write left to the background
// worker (writing to an in-memory store meanwhile; when it falls behind,
// PinNew writes itself, so this is the cost either way).
func BenchmarkPinNew(b *testing.B) {
	a := NewAffinity(Options{Store: NewMemoryStore(1<<20, nil)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	b.ReportAllocs()
	for b.Loop() {
		a.PinNew(ctx, "web", NewID(), "web-1", time.Hour)
	}
}
