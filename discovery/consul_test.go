package discovery

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestEmptyHold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name    string
		emptied bool
		at      time.Duration
		hold    bool
		ev      holdEvent
	}{
		{"normal answer", false, 0, false, holdNone},
		{"everything gone", true, 1 * time.Second, true, holdStarted},
		{"still gone within grace", true, 20 * time.Second, true, holdNone},
		{"back within grace", false, 25 * time.Second, false, holdEnded},
		{"gone again: a new grace", true, 40 * time.Second, true, holdStarted},
		{"grace over: applied", true, 70 * time.Second, false, holdExpired},
		{"empty after empty is no emptying", false, 71 * time.Second, false, holdNone},
	}
	h := emptyHold{grace: 30 * time.Second}
	for _, s := range steps {
		hold, ev := h.check(s.emptied, t0.Add(s.at))
		if hold != s.hold || ev != s.ev {
			t.Fatalf("%s: hold %v event %d; want %v %d", s.name, hold, ev, s.hold, s.ev)
		}
	}
	off := emptyHold{grace: -1}
	if hold, _ := off.check(true, t0); hold {
		t.Fatal("a negative grace held an empty answer")
	}
}

func TestCatalogEmptied(t *testing.T) {
	web := map[string][]string{"consul": nil, "web": {"latch.route=/"}, "api": nil}
	tests := []struct {
		name       string
		last, next map[string][]string
		want       bool
	}{
		{"first answer", nil, map[string][]string{"consul": nil}, false},
		{"only consul left", web, map[string][]string{"consul": nil}, true},
		{"nothing at all", web, map[string][]string{}, true},
		{"one service left", web, map[string][]string{"consul": nil, "api": nil}, false},
		{"nothing to lose", map[string][]string{"consul": nil}, map[string][]string{}, false},
	}
	if !emptied(web, map[string][]string{"consul": nil, "api": nil}, true) {
		t.Error("while holding, a service still missing keeps the hold")
	}
	if emptied(web, map[string][]string{"api": nil, "web": nil}, true) {
		t.Error("while holding, every service back ends the hold")
	}
	for _, tt := range tests {
		if got := emptied(tt.last, tt.next, false); got != tt.want {
			t.Errorf("%s: emptied = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// fakeAnswer is one scripted answer of the fake agent: an HTTP status
// (0 = 200), the index and leader headers, and the service's instances.
type fakeAnswer struct {
	status     int
	index      uint64
	leaderless bool
	ids        []string
	before     func()   // runs before answering (advance a clock)
	noIndex    bool     // served only to a query without an index (others block)
	critical   []string // ids whose check is critical
	// services is the answer to /v1/catalog/services (the catalog watch).
	services map[string][]string
}

// fakeQuery is what the watch asked for.
type fakeQuery struct {
	index, wait string
	stale       bool
}

// fakeAgent answers /v1/health/service/web from a script, recording each
// query; past the script's end it blocks as a long blocking query would.
type fakeAgent struct {
	leaderless atomic.Bool // what /v1/status/leader says
	silent     atomic.Bool // /v1/status/leader never answers (a partition)
	mu         sync.Mutex
	script     []fakeAnswer
	queries    []fakeQuery
	srv        *httptest.Server
}

func newFakeAgent(t *testing.T, script ...fakeAnswer) *fakeAgent {
	f := &fakeAgent{script: script}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status/leader" {
			if f.silent.Load() {
				<-r.Context().Done()
				return
			}
			leader := "127.0.0.1:8300"
			if f.leaderless.Load() {
				leader = ""
			}
			_ = json.NewEncoder(w).Encode(leader)
			return
		}
		q := r.URL.Query()
		_, stale := q["stale"]
		f.mu.Lock()
		f.queries = append(f.queries, fakeQuery{index: q.Get("index"), wait: q.Get("wait"), stale: stale})
		if len(f.script) == 0 || (f.script[0].noIndex && q.Get("index") != "") {
			f.mu.Unlock()
			<-r.Context().Done()
			return
		}
		a := f.script[0]
		f.script = f.script[1:]
		f.mu.Unlock()
		if a.before != nil {
			a.before()
		}
		if a.status != 0 && a.status != 200 {
			http.Error(w, "agent trouble", a.status)
			return
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(!a.leaderless))
		if r.URL.Path == "/v1/catalog/services" {
			_ = json.NewEncoder(w).Encode(a.services)
			return
		}
		out := []*api.ServiceEntry{}
		for _, id := range a.ids {
			e := &api.ServiceEntry{Node: &api.Node{Node: "n", Address: "127.0.0.1"},
				Service: &api.AgentService{ID: id, Service: "web", Port: 8000 + int(id[0])}}
			if slices.Contains(a.critical, id) {
				e.Checks = api.HealthChecks{{CheckID: "c", ServiceID: id, Status: api.HealthCritical}}
			}
			out = append(out, e)
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgent) done() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.script) == 0
}

func (f *fakeAgent) query(i int) fakeQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[i]
}

// watchFake runs a Consul watch of "web" on the fake agent until its script
// is done and one more query is waiting, and returns what was published.
func watchFake(t *testing.T, f *fakeAgent, opts ConsulOptions) []Snapshot {
	t.Helper()
	var mu sync.Mutex
	var got []Snapshot
	runFake(t, f, opts, func(ctx context.Context, client *api.Client, opts ConsulOptions) {
		_ = NewConsul(client, opts).Watch(ctx, "web", func(s Snapshot) { mu.Lock(); got = append(got, s); mu.Unlock() })
	})
	mu.Lock()
	defer mu.Unlock()
	return got
}

// watchCatalogFake is watchFake for the catalog watch.
func watchCatalogFake(t *testing.T, f *fakeAgent, opts ConsulOptions) []map[string][]string {
	t.Helper()
	var mu sync.Mutex
	var got []map[string][]string
	runFake(t, f, opts, func(ctx context.Context, client *api.Client, opts ConsulOptions) {
		_ = NewCatalog(client, opts).Watch(ctx, func(m map[string][]string) { mu.Lock(); got = append(got, m); mu.Unlock() })
	})
	mu.Lock()
	defer mu.Unlock()
	return got
}

// fakeOptions are opts for a watch on the fake agent: fast backoff, quiet,
// no settle window unless the test sets one (with a clock).
func fakeOptions(opts ConsulOptions) ConsulOptions {
	opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 2*time.Millisecond
	if opts.ReconnectSettle == 0 {
		opts.ReconnectSettle = -1
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return opts
}

// runFake runs watch on the fake agent until its script is done and one
// more query is waiting.
func runFake(t *testing.T, f *fakeAgent, opts ConsulOptions, watch func(context.Context, *api.Client, ConsulOptions)) {
	t.Helper()
	client, _, err := NewClient(ClientConfig{Address: f.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, client, fakeOptions(opts))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !f.done() || len(f.queries) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watch never went through the script")
		}
		time.Sleep(time.Millisecond)
	}
	// The last query is in: the watch has published the script's last answer.
	want := len(f.queries)
	for {
		f.mu.Lock()
		n := len(f.queries)
		f.mu.Unlock()
		if n > want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func ids(s Snapshot) []string {
	var out []string
	for _, b := range s.Backends {
		out = append(out, b.ID)
	}
	return out
}

// Issue 12: after an error the next query must not block on an index a new
// agent may never reach, and the stale flag clears with its first answer.
func TestConsulRequeriesAtOnceAfterError(t *testing.T) {
	f := newFakeAgent(t,
		fakeAnswer{index: 500, ids: []string{"a", "b"}},
		fakeAnswer{status: 500},                        // the agent goes away
		fakeAnswer{index: 12, ids: []string{"a", "b"}}, // back, restarted: a lower index
		fakeAnswer{index: 13, ids: []string{"a", "b", "c"}},
	)
	got := watchFake(t, f, ConsulOptions{})
	if q := f.query(2); q.index != "" {
		t.Fatalf("query after the error asked for index %s; want a non-blocking query", q.index)
	}
	if q := f.query(3); q.index != "12" {
		t.Fatalf("query after the restart blocked on index %q; want the new agent's 12", q.index)
	}
	if len(got) != 4 || !got[1].Stale || got[2].Stale || len(got[3].Backends) != 3 {
		t.Fatalf("published %+v; want fresh, stale, fresh, then 3 backends", got)
	}
	if q := f.query(0); !q.stale {
		t.Fatal("default read mode is not stale")
	}
}

func TestConsulIndexBackwardsResets(t *testing.T) {
	f := newFakeAgent(t,
		fakeAnswer{index: 500, ids: []string{"a"}},
		fakeAnswer{index: 40, ids: []string{"a"}}, // a snapshot restore
	)
	watchFake(t, f, ConsulOptions{})
	if q := f.query(2); q.index != "" {
		t.Fatalf("query after the index went backwards asked for index %s; want 0 (a reset)", q.index)
	}
}

// An agent that knows no leader answers in stale mode: its answer counts,
// marked stale, and queries wait briefly. Blocking answers do not say
// whether there is a leader (Consul 1.22 always says no); the leader probe
// notices the election and asks again without an index, which clears the
// flag.
func TestConsulLeaderlessIsStale(t *testing.T) {
	var f *fakeAgent
	f = newFakeAgent(t,
		fakeAnswer{index: 5, ids: []string{"a"}},
		fakeAnswer{index: 5, leaderless: true}, // a blocking answer: its leader flag is ignored
		fakeAnswer{status: 500},
		fakeAnswer{index: 5, ids: []string{"a"}, leaderless: true, before: func() { f.leaderless.Store(true) }},
		fakeAnswer{index: 6, ids: []string{"a", "b"}, before: func() { f.leaderless.Store(false) }}, // elected
		fakeAnswer{index: 6, ids: []string{"a", "b"}, noIndex: true},                                // asked again without an index after the probe
	)
	got := watchFake(t, f, ConsulOptions{StaleWait: 1500 * time.Millisecond, LeaderCheck: 20 * time.Millisecond})
	if q := f.query(1); q.wait != "300000ms" {
		t.Fatalf("query while fresh waited %q; want the 5m default", q.wait)
	}
	if q := f.query(4); q.wait != "1500ms" || q.index != "5" {
		t.Fatalf("query while stale: index %q wait %q; want 5 and 1500ms", q.index, q.wait)
	}
	if len(got) < 3 || got[0].Stale || !got[len(got)-2].Stale || got[len(got)-1].Stale || len(got[len(got)-1].Backends) != 2 {
		t.Fatalf("published %+v; want fresh, stale while leaderless, then fresh with a and b", got)
	}
}

// For ReconnectSettle after an outage, answers may add backends and clear
// the stale flag but not lower health nor remove backends: a restarted
// agent flips its checks one by one, and the sessions of the first to go
// critical would move. At the end of the window the answer applies.
func TestConsulSettlesAfterReconnect(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	crit := func(ids ...string) []string { return ids }
	f := newFakeAgent(t,
		fakeAnswer{index: 5, ids: []string{"a", "b", "c"}},
		fakeAnswer{status: 500},
		fakeAnswer{index: 6, ids: []string{"a", "b", "c", "d"}, critical: crit("a")}, // back: a's check first...
		fakeAnswer{index: 7, ids: []string{"b", "c", "d"}, critical: crit("b")},      // ...then b's; a gone
		fakeAnswer{index: 8, ids: []string{"b", "c", "d"}, critical: crit("b"), before: func() { now.Add(int64(3500 * time.Millisecond)) }},
	)
	got := watchFake(t, f, ConsulOptions{ReconnectSettle: 3 * time.Second, Now: clock})
	health := func(s Snapshot) string {
		var out []string
		for _, b := range s.Backends {
			out = append(out, b.ID+"="+b.Health.String())
		}
		return strings.Join(out, ",")
	}
	want := []string{
		"a=passing,b=passing,c=passing",           // before
		"a=passing,b=passing,c=passing",           // stale
		"a=passing,b=passing,c=passing,d=passing", // back: d added, stale cleared, a kept passing
		"b=critical,c=passing,d=passing",          // window over
	}
	if len(got) != len(want) {
		t.Fatalf("published %d snapshots %+v; want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if h := health(got[i]); h != w || got[i].Stale != (i == 1) {
			t.Fatalf("snapshot %d: %s stale=%v; want %s stale=%v", i, h, got[i].Stale, w, i == 1)
		}
	}
	if q := f.query(3); q.wait != "3000ms" {
		t.Fatalf("query in the settle window waited %q; want the window's 3000ms", q.wait)
	}
}

// An answer that empties the service is held back for the grace while the
// last good backends serve, marked stale and held; then it is applied.
func TestConsulEmptyAnswerGrace(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	advance := func(d time.Duration) func() { return func() { now.Add(int64(d)) } }
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	f := newFakeAgent(t,
		fakeAnswer{index: 50, ids: []string{"a", "b"}},
		fakeAnswer{index: 3},                                                        // a new agent, nothing registered yet
		fakeAnswer{index: 4, before: advance(10 * time.Second)},                     // still empty within the grace
		fakeAnswer{index: 5, ids: []string{"b"}, before: advance(time.Second)},      // b registered again: a still held
		fakeAnswer{index: 6, ids: []string{"b", "c"}, before: advance(time.Second)}, // a new one serves too
		fakeAnswer{index: 7, ids: []string{"a", "b", "c"}},                          // all back: the hold ends
		fakeAnswer{index: 8},                                                        // gone again: a new grace
		fakeAnswer{index: 9, ids: []string{"c"}, before: advance(31 * time.Second)}, // grace over: applied as it is
		fakeAnswer{index: 10},                                                       // gone again
		fakeAnswer{index: 11, before: advance(31 * time.Second)},                    // grace over: empty applied
	)
	got := watchFake(t, f, ConsulOptions{EmptyGrace: 30 * time.Second, Now: clock})
	type pub struct {
		ids         []string
		stale, held bool
	}
	want := []pub{
		{[]string{"a", "b"}, false, false},
		{[]string{"a", "b"}, true, true},
		{[]string{"a", "b", "c"}, true, true},
		{[]string{"a", "b", "c"}, false, false},
		{[]string{"a", "b", "c"}, true, true},
		{[]string{"c"}, false, false},
		{[]string{"c"}, true, true},
		{nil, false, false},
	}
	if len(got) != len(want) {
		t.Fatalf("published %d snapshots %+v; want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if !slicesEqual(ids(g), w.ids) || g.Stale != w.stale || g.Held != w.held {
			t.Fatalf("snapshot %d: %v stale=%v held=%v; want %v stale=%v held=%v", i, ids(g), g.Stale, g.Held, w.ids, w.stale, w.held)
		}
	}
	// While holding, queries wait at most the time left of the grace (and
	// the short stale wait), so the grace ends on time without a change.
	if q := f.query(2); q.wait != "2000ms" {
		t.Fatalf("query while holding waited %q; want the 2s stale wait", q.wait)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
