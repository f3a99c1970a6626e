package integration

import (
	"context"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/session"
)

// BenchmarkRedisMemoryPerSession stores 100,000 pins the way latch does
// (key, backend id, TTL) and reports Redis's used_memory per session.
//
//	go test -run '^$' -bench BenchmarkRedisMemoryPerSession -benchtime 1x ./integration/
func BenchmarkRedisMemoryPerSession(b *testing.B) {
	r := harness.StartRedis(b)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb), StoreTimeout: time.Second})
	ctx := context.Background()
	const n = 100_000
	before := r.UsedMemory(b)
	for i := range n {
		if _, err := a.Pin(ctx, "web", session.NewID(), []string{"web-1", "web-2", "web-3", "web-4"}[i%4], 30*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(r.UsedMemory(b)-before)/n, "bytes/session")
}

// BenchmarkInvalidation: how long until a replica sees another replica's
// re-pin of a session it has cached (Redis pub/sub).
//
//	go test -run '^$' -bench BenchmarkInvalidation ./integration/
func BenchmarkInvalidation(b *testing.B) {
	r := harness.StartRedis(b)
	mk := func() (*session.Affinity, func()) {
		rdb, err := session.ParseRedisURL(r.URL)
		if err != nil {
			b.Fatal(err)
		}
		a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb),
			CacheTTL: time.Hour, StoreTimeout: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = a.Run(ctx); close(done) }()
		return a, func() { cancel(); <-done; rdb.Close() }
	}
	a, stopA := mk()
	defer stopA()
	c, stopC := mk()
	defer stopC()
	ctx := context.Background()
	rc := r.Client(b)
	defer rc.Close()
	harness.WaitFor(b, 5*time.Second, "both replicas subscribed", func() bool {
		n, _ := rc.PubSubNumSub(ctx, session.InvalidationChannel).Result()
		return n[session.InvalidationChannel] == 2
	})
	var total time.Duration
	for i := 0; i < b.N; i++ {
		id := session.NewID()
		if _, err := a.Pin(ctx, "web", id, "web-1", time.Minute); err != nil {
			b.Fatal(err)
		}
		if got, _, _ := c.Lookup(ctx, "web", id); got != "web-1" { // cached in c now
			b.Fatalf("replica c sees %q", got)
		}
		start := time.Now()
		if _, err := a.Repin(ctx, "web", id, "web-1", "web-2", time.Minute); err != nil {
			b.Fatal(err)
		}
		for {
			if got, _, _ := c.Lookup(ctx, "web", id); got == "web-2" {
				break
			}
			if time.Since(start) > 5*time.Second {
				b.Fatal("re-pin not seen by the other replica within 5s")
			}
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-to-see-repin")
}
