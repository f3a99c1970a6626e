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
	s := session.NewRedisStore(rdb, session.RedisOptions{})
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
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("Get after Delete: found=%v, %v; want absent", ok, err)
	}
}
