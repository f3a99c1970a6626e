package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/session"
)

// BenchmarkRedisMemoryLiveCounts is issue 26's Redis cost of the live-session
// counts least_sessions reads: 100,000 sessions over 4 backends, each
// pinned as latch pins a new session that comes back (PinNew, then Touch:
// SET NX plus a ZADD to its backend's sorted set, batched in the
// background). It reports Redis's used_memory per session with the sorted
// sets and without them (the 4 sets deleted afterwards), the sets' own
// MEMORY USAGE per session, and the write commands per session.
//
// Then the same 100,000 sessions with a 5 s TTL, left idle: once Redis
// has expired their pins, the sorted sets still hold every member
// (ended-bytes/session) until a ZREMRANGEBYSCORE of the expired scores
// trims them (trimmed-bytes/session): a count's (least_sessions' refresh,
// once a second, or the admin API's), here, or the next write to the set
// after countTrimEvery (5 s).
//
//	go test -run '^$' -bench BenchmarkRedisMemoryLiveCounts -benchtime 1x ./integration/
func BenchmarkRedisMemoryLiveCounts(b *testing.B) {
	const n = 100_000
	r := harness.StartRedis(b)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	rc := r.Client(b)
	defer rc.Close()
	a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb), StoreTimeout: 5 * time.Second, CacheSize: 2 * n})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	backends := []string{"web-1", "web-2", "web-3", "web-4"}
	var keys []string
	for _, be := range backends {
		keys = append(keys, "l:s:{web:"+be+"}") // session.countKey
	}
	counted := func() int64 {
		var sum int64
		for _, k := range keys {
			sum += rc.ZCard(ctx, k).Val()
		}
		return sum
	}
	// pin makes n sessions of ttl, waiting every 2,000 for the background
	// to have counted them (the job queue holds 4,096: none is dropped).
	pin := func(ttl time.Duration) {
		for i := range n {
			id := session.NewID()
			a.PinNew(ctx, "web", id, backends[i%len(backends)], ttl)
			a.Touch("web", id, ttl) // its second request: the pin is stored
			if (i+1)%2000 == 0 || i == n-1 {
				harness.WaitFor(b, 30*time.Second, fmt.Sprintf("%d sessions counted", i+1), func() bool { return counted() == int64(i+1) })
			}
		}
	}
	writes := func(c map[string]int64) int64 {
		return c["set"] + c["zadd"] + c["expire"] + c["pexpire"] + c["zremrangebyscore"]
	}

	before, cmds := r.UsedMemory(b), r.CommandCount(b)
	pin(30 * time.Minute)
	with := r.UsedMemory(b)
	var sets int64
	for _, k := range keys {
		sets += rc.MemoryUsage(ctx, k, 0).Val() // SAMPLES 0: every member
	}
	wrote := writes(r.CommandCount(b)) - writes(cmds)
	if err := rc.Del(ctx, keys...).Err(); err != nil {
		b.Fatal(err)
	}
	without := r.UsedMemory(b)
	b.ReportMetric(float64(with-before)/n, "bytes/session")
	b.ReportMetric(float64(without-before)/n, "pin-bytes/session")
	b.ReportMetric(float64(with-without)/n, "count-bytes/session")
	b.ReportMetric(float64(sets)/n, "count-memory-usage/session")
	b.ReportMetric(float64(wrote)/n, "write-cmds/session")

	if err := rc.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	before = r.UsedMemory(b)
	pin(5 * time.Second)
	harness.WaitFor(b, time.Minute, "the idle sessions' pins expired", func() bool {
		return rc.DBSize(ctx).Val() == int64(len(keys))
	})
	ended := r.UsedMemory(b)
	c, err := a.Sessions(ctx, "web", backends)
	if err != nil {
		b.Fatal(err)
	}
	for be, k := range c {
		if k != 0 {
			b.Fatalf("%s counts %d sessions after every one ended", be, k)
		}
	}
	b.ReportMetric(float64(ended-before)/n, "ended-bytes/session")
	b.ReportMetric(float64(r.UsedMemory(b)-before)/n, "trimmed-bytes/session")
	b.ReportMetric(float64(rc.Exists(ctx, keys...).Val()), "sets-left")
}
