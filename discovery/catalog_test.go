package discovery

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// For ReconnectSettle after an outage, catalog answers may add services and
// tags but not remove them (a restarted agent lists its services again one
// by one); at the end of the window the answer applies.
func TestCatalogSettlesAfterReconnect(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	web := []string{"latch.route=/"}
	f := newFakeAgent(t,
		fakeAnswer{index: 5, services: map[string][]string{"consul": nil, "web": web, "api": {"latch.route=/api", "v1"}}},
		fakeAnswer{status: 500},
		fakeAnswer{index: 6, services: map[string][]string{"consul": nil, "web": web, "new": nil}},                // back: api missing
		fakeAnswer{index: 7, services: map[string][]string{"consul": nil, "web": web, "api": {"v1"}, "new": nil}}, // api back, without its route tag
		fakeAnswer{index: 8, services: map[string][]string{"consul": nil, "web": web, "api": {"v1"}, "new": nil},
			before: func() { now.Add(int64(3500 * time.Millisecond)) }}, // window over
	)
	got := watchCatalogFake(t, f, ConsulOptions{ReconnectSettle: 3 * time.Second, Now: clock})
	want := []string{
		"api=[latch.route=/api v1] consul=[] web=[latch.route=/]",        // before
		"api=[latch.route=/api v1] consul=[] new=[] web=[latch.route=/]", // back: new added, api kept
		"api=[v1] consul=[] new=[] web=[latch.route=/]",                  // window over: api's route tag gone
	}
	if len(got) != len(want) {
		t.Fatalf("published %d maps %v; want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if g := catalogString(got[i]); g != w {
			t.Fatalf("map %d: %s; want %s", i, g, w)
		}
	}
	if q := f.query(3); q.wait != "3000ms" {
		t.Fatalf("query in the settle window waited %q; want the window's 3000ms", q.wait)
	}
}

// While the servers have no leader, catalog queries wait StaleWait; the
// leader probe notices the election and asks again without an index.
func TestCatalogLeaderProbe(t *testing.T) {
	var f *fakeAgent
	web := map[string][]string{"consul": nil, "web": {"latch.route=/"}}
	both := map[string][]string{"consul": nil, "web": {"latch.route=/"}, "api": {"latch.route=/api"}}
	f = newFakeAgent(t,
		fakeAnswer{index: 5, services: web},
		fakeAnswer{status: 500},
		fakeAnswer{index: 5, services: web, leaderless: true, before: func() { f.leaderless.Store(true) }},
		fakeAnswer{index: 6, services: both, before: func() { f.leaderless.Store(false) }}, // elected
		fakeAnswer{index: 6, services: both, noIndex: true},                                // asked again without an index after the probe
	)
	got := watchCatalogFake(t, f, ConsulOptions{StaleWait: 1500 * time.Millisecond, LeaderCheck: 20 * time.Millisecond})
	if q := f.query(1); q.wait != "300000ms" {
		t.Fatalf("query while the leader is known waited %q; want the 5m default", q.wait)
	}
	if q := f.query(3); q.wait != "1500ms" || q.index != "5" {
		t.Fatalf("query while leaderless: index %q wait %q; want 5 and 1500ms", q.index, q.wait)
	}
	if len(got) != 2 || catalogString(got[1]) != catalogString(both) {
		t.Fatalf("published %v; want web, then web and api", got)
	}
}

// A partition drops packets and refuses nothing: the blocking query waits
// on a silent connection. When the agent does not answer the leader probe
// in time, the query in flight is ended and the watch marked stale.
func TestConsulSilentAgentIsStale(t *testing.T) {
	f := newFakeAgent(t, fakeAnswer{index: 5, ids: []string{"a"}}) // then every query blocks
	client, _, err := NewClient(ClientConfig{Address: f.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	opts := fakeOptions(ConsulOptions{LeaderCheck: 20 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []Snapshot
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = NewConsul(client, opts).Watch(ctx, "web", func(s Snapshot) { mu.Lock(); got = append(got, s); mu.Unlock() })
	}()
	defer func() { cancel(); <-done }()
	published := func() []Snapshot { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	waitUntil(t, "the first answer", func() bool { return len(published()) == 1 })
	if s := published(); s[0].Stale {
		t.Fatalf("published %+v; want a fresh snapshot first", s)
	}
	f.silent.Store(true)
	waitUntil(t, "a stale snapshot", func() bool { s := published(); return len(s) == 2 && s[1].Stale })
	if s := published()[1]; !slicesEqual(ids(s), []string{"a"}) {
		t.Fatalf("stale snapshot %v; want the last backends, a", ids(s))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func catalogString(m map[string][]string) string {
	var out string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if out != "" {
			out += " "
		}
		out += fmt.Sprintf("%s=%v", name, m[name])
	}
	return out
}
