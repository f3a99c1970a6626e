package integration

import (
	"context"
	"errors"
	"io/fs"
	"strings"
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
		StoreTimeout: 5 * time.Second}) // generous: make test runs this beside every other package
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
	// Batches may land in any order: wait for all of them, each poll from a
	// replica with an empty cache. The replicas reading get the writer's
	// generous timeout too: at the default 25ms, one slow answer out of
	// 500 under make test's load failed the poll, and a CI run saw every
	// poll for 30 s fail (the likeliest reading of its timeout).
	slow := session.Options{Store: session.NewRedisStore(rdb), StoreTimeout: 5 * time.Second}
	harness.WaitFor(t, 30*time.Second, "every pin in Redis", func() bool {
		probe := session.NewAffinity(slow)
		for _, id := range ids {
			if _, ok, _ := probe.Lookup(ctx, "web", id); !ok {
				return false
			}
		}
		return true
	})
	a2 := session.NewAffinity(slow)
	for _, id := range ids {
		if b, ok, err := a2.Lookup(ctx, "web", id); !ok || b != "web-1" || err != nil { // a2's cache was empty: from Redis
			t.Fatalf("another replica's lookup: %q %v %v; want web-1 from Redis", b, ok, err)
		}
	}
	counts, err := a.Sessions(ctx, "web", []string{"web-1"})
	if err != nil || counts["web-1"] != n {
		t.Fatalf("session count %v, %v; want exactly %d", counts, err, n)
	}
}

// Issue 26: live means live. A session counts on the backend it is pinned
// to only (a re-pin takes it off the old backend's count at once), and no
// longer once its TTL passed without a refresh; a refreshed session stays.
// (HyperLogLogs in buckets counted a moved session on both backends, and
// an ended one until its bucket aged out.)
func TestRedisSessionCountsLive(t *testing.T) {
	r := harness.StartRedis(t)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb), StoreTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const n, short = 100, 3 * time.Second
	backends := []string{"web-1", "web-2"}
	counted := func(want1, want2 int64) func() bool {
		return func() bool {
			c, err := a.Sessions(ctx, "web", backends)
			return err == nil && c["web-1"] == want1 && c["web-2"] == want2
		}
	}
	pin := func(k int, ttl time.Duration) []session.ID {
		ids := make([]session.ID, k)
		for i := range ids {
			ids[i] = session.NewID()
			if _, err := a.Pin(ctx, "web", ids[i], "web-1", ttl); err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
	ids := pin(n, time.Hour)
	harness.WaitFor(t, 10*time.Second, "100 sessions counted on web-1", counted(n, 0))
	for _, id := range ids[:n/4] { // a quarter moves to web-2
		if got, err := a.Repin(ctx, "web", id, "web-1", "web-2", time.Hour); err != nil || got != "web-2" {
			t.Fatalf("Repin: %q, %v", got, err)
		}
	}
	harness.WaitFor(t, 10*time.Second, "moved sessions counted on web-2 only", counted(3*n/4, n/4))
	pin(n/4, short) // their clients will stop coming
	harness.WaitFor(t, 10*time.Second, "short sessions counted", counted(n, n/4))
	harness.WaitFor(t, 10*time.Second, "the idle sessions no longer counted", counted(3*n/4, n/4))
	// Trimmed in the background: the ended sessions are gone from Redis too.
	if got := rdb.ZCard(ctx, "l:s:{web:web-1}").Val(); got != 3*n/4 {
		t.Fatalf("web-1's set holds %d sessions after a count; want the %d live ones", got, 3*n/4)
	}
}

// Issue 26: the live-count sorted sets are trimmed by the writes too.
// Every session a replica stores is added to its backend's set whatever
// the policy, and the counts (which trim ended sessions) are read only by
// least_sessions and the admin API; the set's own expiry is renewed while
// sessions keep coming. Without a trim on the write path the sets of a
// busy service under p2c kept every session ever stored (128 bytes each
// in BenchmarkRedisMemoryLiveCounts). Here nothing counts: ended sessions
// must leave the set as new ones are written.
func TestRedisSessionCountsTrimmedByWrites(t *testing.T) {
	r := harness.StartRedis(t)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	rc := r.Client(t)
	defer rc.Close()
	a := session.NewAffinity(session.Options{Store: session.NewRedisStore(rdb), StoreTimeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const set, ended = "l:s:{web:web-1}", 100
	for range ended {
		if _, err := a.Pin(ctx, "web", session.NewID(), "web-1", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	harness.WaitFor(t, 10*time.Second, "the short sessions in the set", func() bool { return rc.ZCard(ctx, set).Val() == ended })
	harness.WaitFor(t, 10*time.Second, "the short sessions' pins expired", func() bool { return rc.DBSize(ctx).Val() == 1 })
	live := int64(0)
	harness.WaitFor(t, 20*time.Second, "the ended sessions trimmed from the set by new sessions' writes", func() bool {
		if _, err := a.Pin(ctx, "web", session.NewID(), "web-1", time.Hour); err != nil {
			t.Fatal(err)
		}
		live++
		n := rc.ZCard(ctx, set).Val()
		return n > 0 && n <= live
	})
}

// The blob store tls.acme keeps certificates in, against a real Redis:
// what certmagic's Storage contract asks (missing keys are
// fs.ErrNotExist, directories are key prefixes, Delete takes a directory
// with it, List recursive or not), and a lock that excludes a second
// holder until it is released and carries a lease.
func TestRedisBlobs(t *testing.T) {
	r := harness.StartRedis(t)
	rdb, err := session.ParseRedisURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	b := session.NewBlobs(rdb, "latch-acme-test")
	ctx := context.Background()

	if _, err := b.Load(ctx, "certificates/x/a.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	for _, k := range []string{"certificates/ca/a.test/a.test.crt", "certificates/ca/a.test/a.test.key", "certificates/ca/b.test/b.test.crt", "acme/account.json"} {
		if err := b.Store(ctx, k, []byte("pem of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := b.Load(ctx, "certificates/ca/a.test/a.test.key"); err != nil || string(v) != "pem of certificates/ca/a.test/a.test.key" {
		t.Fatalf("Load: %q, %v", v, err)
	}
	if got, err := b.List(ctx, "certificates/ca", false); err != nil || strings.Join(got, " ") != "certificates/ca/a.test certificates/ca/b.test" {
		t.Errorf("List non-recursive: %q, %v", got, err)
	}
	if got, err := b.List(ctx, "certificates", true); err != nil || len(got) != 3 {
		t.Errorf("List recursive: %q, %v; want the 3 files", got, err)
	}
	if info, err := b.Stat(ctx, "acme/account.json"); err != nil || info.Dir || info.Size != int64(len("pem of acme/account.json")) || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat of a file: %+v, %v", info, err)
	}
	if info, err := b.Stat(ctx, "certificates/ca"); err != nil || !info.Dir {
		t.Errorf("Stat of a directory: %+v, %v", info, err)
	}
	if !b.Exists(ctx, "certificates/ca/a.test") || b.Exists(ctx, "certificates/ca/c.test") {
		t.Errorf("Exists: a directory must exist, a missing one must not")
	}
	if err := b.Delete(ctx, "certificates/ca/a.test"); err != nil {
		t.Fatal(err)
	}
	if b.Exists(ctx, "certificates/ca/a.test/a.test.crt") || !b.Exists(ctx, "certificates/ca/b.test/b.test.crt") {
		t.Errorf("Delete of a directory: its files must go, its siblings stay")
	}
	if err := b.Delete(ctx, "never/stored"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}

	// The lock: a second taker waits while it is held, gets it once it is released.
	if err := b.Lock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx, "{latch-acme-test}:lock:issue_cert_a.test").Val(); pttl <= 0 {
		t.Errorf("held lock has no lease (PTTL %v)", pttl)
	}
	other := session.NewBlobs(rdb, "latch-acme-test") // another replica
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	err = other.Lock(short, "issue_cert_a.test")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second holder while held: %v, want to wait until its context ends", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := other.Lock(waitCtx, "issue_cert_a.test"); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.test"); err == nil {
		t.Errorf("unlocking a lock another holder has: want an error")
	}
	if err := other.Unlock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
}
