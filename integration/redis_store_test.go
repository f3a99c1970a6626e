package integration

import (
	"context"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/session"
)

// The Redis store against a real Redis: first pin wins and carries its
// TTL, compare-and-swap moves only the expected pin, Touch slides the TTL.
func TestRedisStore(t *testing.T) {
	r := harness.StartRedis(t)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	s := session.NewRedisStore(rdb)
	ctx := context.Background()
	ttl := time.Minute

	if got, err := s.SetNX(ctx, "k", "web-1", ttl); err != nil || got != "web-1" {
		t.Fatalf("SetNX on a free key: %q, %v; want web-1 stored", got, err)
	}
	if got, err := s.SetNX(ctx, "k", "web-2", ttl); err != nil || got != "web-1" {
		t.Fatalf("SetNX on a taken key: %q, %v; want the winner web-1", got, err)
	}
	if pttl := rdb.PTTL(ctx, "k").Val(); pttl <= 0 || pttl > ttl {
		t.Fatalf("TTL after SetNX %v; want within (0, %v]", pttl, ttl)
	}
	if got, err := s.CompareAndSwap(ctx, "k", "web-3", "web-4", ttl); err != nil || got != "web-1" {
		t.Fatalf("CAS with a stale expectation: %q, %v; want web-1 kept", got, err)
	}
	if got, err := s.CompareAndSwap(ctx, "k", "web-1", "web-2", ttl); err != nil || got != "web-2" {
		t.Fatalf("CAS: %q, %v; want web-2", got, err)
	}
	if got, ok, err := s.Get(ctx, "k"); err != nil || !ok || got != "web-2" {
		t.Fatalf("Get: %q %v %v; want web-2", got, ok, err)
	}
	if err := s.Touch(ctx, "k", time.Hour); err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx, "k").Val(); pttl <= ttl {
		t.Fatalf("TTL after Touch %v; want it slid past %v", pttl, ttl)
	}
	if err := s.Tombstone(ctx, "k", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx, "k").Val(); pttl <= time.Hour {
		t.Fatalf("TTL of the tombstone %v; want the 2h given", pttl)
	}
	// Neither a racing re-pin nor a new pin takes an unpinned session's key.
	if got, err := s.CompareAndSwap(ctx, "k", "web-2", "web-3", ttl); err != nil || got == "web-3" {
		t.Fatalf("CAS over a tombstone: %q, %v; want the tombstone kept", got, err)
	}
	if got, err := s.SetNX(ctx, "k", "web-3", ttl); err != nil || got == "web-3" {
		t.Fatalf("SetNX over a tombstone: %q, %v; want the tombstone kept", got, err)
	}
}

// New sessions' pins reach Redis when the sessions come back (their
// second request), in batches (one pipelined round trip for whatever is
// waiting), with their TTL, and are counted.
func TestAffinityPinNewBatchesToRedis(t *testing.T) {
	r := harness.StartRedis(t)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb),
		StoreTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const n = 500
	ids := make([]session.ID, n)
	for i := range ids {
		ids[i] = session.NewID()
		a.PinNew(ctx, "web", ids[i], "web-1", time.Minute)
		a.Touch("web", ids[i], time.Minute)
	}
	a2 := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb)})
	harness.WaitFor(t, 10*time.Second, "every pin in Redis", func() bool {
		_, _, ok, _ := a2.Lookup(ctx, "web", ids[n-1])
		return ok
	})
	for _, id := range ids[:n-1] { // (the last one is in a2's cache now)
		if b, src, ok, err := a2.Lookup(ctx, "web", id); !ok || b != "web-1" || src != session.SourceStore || err != nil {
			t.Fatalf("another replica's lookup: %q %v %v %v; want web-1 from Redis", b, src, ok, err)
		}
	}
	counts, err := a.Sessions(ctx, "web", []string{"web-1"}, time.Minute)
	if err != nil || counts["web-1"] < n*98/100 || counts["web-1"] > n*102/100 {
		t.Fatalf("session count %v, %v; want about %d", counts, err, n)
	}
}
