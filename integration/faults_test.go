package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// The fault suite: each scenario runs under steady, bounded load over
// sticky sessions and records requests sent, failed (non-2xx or transport
// error), sessions that changed backend and whether each change was
// necessary (the session was on the faulted backend). The table is printed
// at the end (go test -v -run TestFaultSuite ./integration/).

const (
	faultSessions = 400
	faultRate     = 400 // requests/s in all
	faultWorkers  = 8
)

type faultRow struct {
	name                       string
	sent, failed               int
	moved, necessary, needless int
	recovered                  time.Duration // from the fault to serving normally again (0: not measured)
	note                       string
}

var (
	faultMu    sync.Mutex
	faultTable []faultRow
)

func recordFault(r faultRow) {
	faultMu.Lock()
	defer faultMu.Unlock()
	faultTable = append(faultTable, r)
}

// switchable is an in-process backend that says who it is; tests change
// its status and delay, and register it in Consul with a TTL check so they
// can flip its health at once.
type switchable struct {
	id     string
	srv    *httptest.Server
	status atomic.Int32
	delay  atomic.Int64 // nanoseconds
	hits   atomic.Int64
}

func startSwitchable(t testing.TB, id string) *switchable {
	t.Helper()
	s := &switchable{id: id}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := s.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		w.Header().Set("X-Backend-Id", s.id)
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
		}
		fmt.Fprintln(w, s.id)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *switchable) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// faultRig: Consul, Redis, four switchable backends as "web", latch.
type faultRig struct {
	consul   *harness.Consul
	redis    *harness.Redis
	backends []*switchable
	latch    *harness.Latch
	traffic  *load
	// recovered, when set before finish, is the row's time to recover.
	recovered time.Duration
}

func newFaultRig(t *testing.T, mutate func(*config.Config)) *faultRig {
	t.Helper()
	r := &faultRig{consul: harness.StartConsul(t), redis: harness.StartRedis(t)}
	var ids []string
	for i := 1; i <= 4; i++ {
		s := startSwitchable(t, fmt.Sprintf("web-%d", i))
		r.consul.Register(t, s.id, "web", s.addr())
		r.backends = append(r.backends, s)
		ids = append(ids, s.id)
	}
	cfg := harness.LatchConfig(r.consul.HTTPAddr, r.redis.URL, "web")
	if mutate != nil {
		mutate(&cfg)
	}
	r.latch = harness.StartLatch(t, cfg)
	seenAll(t, r.latch.URL+"/", 10*time.Second, ids...)
	r.traffic = newLoad(r.latch.URL+"/", faultSessions)
	r.traffic.warm(t)
	return r
}

// freshAndRouting waits for latch to clear its stale flag, records the
// time since since as the row's recovery, then registers a new backend and
// waits (up to routeWait) for it to get traffic: changes flow again.
func (r *faultRig) freshAndRouting(t *testing.T, since time.Time, routeWait time.Duration) {
	t.Helper()
	harness.WaitFor(t, 10*time.Second, "stale to clear", func() bool {
		return metricValue(t, r.latch.AdminURL, `latch_discovery_stale{service="web"}`) == 0
	})
	r.recovered = time.Since(since)
	x := startSwitchable(t, "web-new")
	r.consul.Register(t, x.id, "web", x.addr())
	harness.WaitFor(t, routeWait, "a new registration to get traffic", func() bool {
		id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, r.latch.URL+"/")
		return id == "web-new"
	})
}

// startLoad runs the steady load for at most d and returns the snapshot of
// each session's backend at the start.
func (r *faultRig) startLoad(d time.Duration) []string {
	r.traffic.mu.Lock()
	before := append([]string(nil), r.traffic.backend...)
	r.traffic.mu.Unlock()
	r.traffic.run(faultWorkers, faultRate, int(d.Seconds()*faultRate)+faultRate, d+5*time.Second)
	return before
}

// finish stops the load and records the row; faulted are the backends
// whose sessions had to move.
func (r *faultRig) finish(t *testing.T, name string, before []string, faulted []string, note string) faultRow {
	t.Helper()
	row := r.traffic.finish(t, name, before, faulted, note)
	row.recovered = r.recovered
	recordFault(row)
	return row
}

// finish stops the load and sums it up as a row: a move is necessary when
// the session was on a faulted backend and moved once, away from it.
func (l *load) finish(t *testing.T, name string, before []string, faulted []string, note string) faultRow {
	t.Helper()
	l.halt()
	sent, failed, errs := l.stats()
	row := faultRow{name: name, sent: sent, failed: failed, note: note}
	l.mu.Lock()
	for i, b := range l.backend {
		if l.moves[i] == 0 {
			continue
		}
		row.moved++
		if contains(faulted, before[i]) && l.moves[i] == 1 && b != before[i] {
			row.necessary++
		} else {
			row.needless++
			if row.needless <= 5 {
				t.Logf("%s: needless move of client %d (was on %s): %v", name, i, before[i], l.hist[i])
			}
		}
	}
	l.mu.Unlock()
	if failed > 0 {
		t.Logf("%s: failures: %v", name, errs)
	}
	if row.needless > 0 {
		t.Logf("%s: first moves: %v", name, l.moveLog)
	}
	return row
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestFaultSuite(t *testing.T) {
	t.Run("backend killed", func(t *testing.T) {
		c := harness.StartConsul(t)
		redis := harness.StartRedis(t)
		var procs []*harness.Backend
		var ids []string
		for i := 1; i <= 4; i++ {
			b := harness.StartBackend(t, c, fmt.Sprintf("web-%d", i), "web", time.Second)
			procs = append(procs, b)
			ids = append(ids, b.ID)
		}
		l := harness.StartLatch(t, harness.LatchConfig(c.HTTPAddr, redis.URL, "web"))
		waitPassing(t, l.AdminURL, "web", 4)
		r := &faultRig{consul: c, redis: redis, latch: l, traffic: newLoad(l.URL+"/", faultSessions)}
		r.traffic.warm(t)
		before := r.startLoad(6 * time.Second)
		r.traffic.waitSent(t, faultRate)
		procs[0].Kill() // SIGKILL
		r.traffic.waitSent(t, 3*faultRate)
		row := r.finish(t, "backend SIGKILL", before, []string{"web-1"}, "")
		if row.failed != 0 || row.needless != 0 {
			t.Fatalf("%+v: want 0 failed and only web-1's sessions moved, once each", row)
		}
	})

	t.Run("check critical", func(t *testing.T) {
		r := newFaultRig(t, nil)
		before := r.startLoad(6 * time.Second)
		r.traffic.waitSent(t, faultRate)
		r.consul.SetHealth(t, "web-2", api.HealthCritical)
		start := time.Now()
		waitBackendGone(t, r.latch.URL+"/", "web-2")
		seen := time.Since(start)
		r.traffic.waitSent(t, 2*faultRate)
		row := r.finish(t, "check critical", before, []string{"web-2"}, fmt.Sprintf("out of rotation in %v", seen.Round(time.Millisecond)))
		if row.failed != 0 || row.needless != 0 {
			t.Fatalf("%+v: want 0 failed and only web-2's sessions moved, once each", row)
		}
	})

	t.Run("backend 500s then recovers", func(t *testing.T) {
		r := newFaultRig(t, func(c *config.Config) {
			c.Defaults.Breaker.FailureStatus = config.Set([]int{500, 502, 503, 504})
			c.Defaults.Breaker.OpenTimeout = config.Set(2 * time.Second)
		})
		before := r.startLoad(10 * time.Second)
		r.traffic.waitSent(t, faultRate)
		r.backends[2].status.Store(500)
		harness.WaitFor(t, 10*time.Second, "breaker of web-3 open", func() bool {
			return breakerOf(t, r.latch.AdminURL, "web-3") == "open"
		})
		r.traffic.waitSent(t, 2*faultRate) // 5 s of 500s in all, at this rate
		r.backends[2].status.Store(0)
		// Sticky clients stay where they were moved; the half-open probe
		// comes with new sessions, as it does in production.
		fresh := &http.Client{Timeout: 5 * time.Second}
		harness.WaitFor(t, 15*time.Second, "breaker of web-3 closed again", func() bool {
			backendOf(t, fresh, r.latch.URL+"/")
			return breakerOf(t, r.latch.AdminURL, "web-3") == "closed"
		})
		row := r.finish(t, "backend 500s 5s", before, []string{"web-3"},
			"breaker opened and closed; the failed are the app's own 500s, relayed (retry.on_status is 502-504) until 5 in a row open the breaker")
		// The breaker trips after 5 consecutive failures; each 500 that
		// reaches a client is one of those (retries do not replay 500 by
		// default), plus at most one per half-open probe.
		if row.failed > 10 {
			t.Fatalf("%+v: want failures bounded by the breaker threshold", row)
		}
	})

	t.Run("backend slowed", func(t *testing.T) {
		r := newFaultRig(t, func(c *config.Config) { c.Defaults.Policy = config.Set(config.List{"least_response_time", "p2c"}) })
		r.backends[3].delay.Store(int64(200 * time.Millisecond))
		// New sessions: count where they land.
		counts := map[string]int{}
		for range 200 {
			id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, r.latch.URL+"/")
			counts[id]++
		}
		r.backends[3].delay.Store(0)
		recordFault(faultRow{name: "backend +200ms", sent: 200, note: fmt.Sprintf("new sessions %v", counts)})
		if counts["web-4"] > 200/4/2 {
			t.Fatalf("slow backend got %d of 200 new sessions (%v); want under half its fair share", counts["web-4"], counts)
		}
		// The fast ones share them: no herding onto whichever measured fastest.
		for _, id := range []string{"web-1", "web-2", "web-3"} {
			if counts[id] < 200/3/4 {
				t.Fatalf("%s got %d of 200 new sessions (%v); want the fast backends to share them", id, counts[id], counts)
			}
		}
	})

	t.Run("consul down 10s", func(t *testing.T) {
		r := newFaultRig(t, nil)
		before := r.startLoad(16 * time.Second)
		r.traffic.waitSent(t, faultRate)
		r.consul.Kill(t)
		r.traffic.waitSent(t, 10*faultRate)
		r.consul.Start(t)
		up := time.Now()
		// Issue 12: the stale flag used to stay up until some unrelated
		// change ended a 5-minute blocking query.
		r.freshAndRouting(t, up, 20*time.Second)
		row := r.finish(t, "consul down 10s (restart with state)", before, nil, "recovered = stale cleared after the agent is up; new registration routed")
		if row.failed != 0 || row.moved != 0 {
			t.Fatalf("%+v: want 0 failed and no session moved", row)
		}
	})

	t.Run("consul restarted without state", consulWithoutState)

	t.Run("redis down 10s", func(t *testing.T) {
		r := newFaultRig(t, nil)
		before := r.startLoad(16 * time.Second)
		r.traffic.waitSent(t, faultRate)
		r.redis.Stop(t)
		r.traffic.waitSent(t, 10*faultRate)
		r.redis.Start(t)
		r.traffic.waitSent(t, 2*faultRate)
		row := r.finish(t, "redis down 10s", before, nil, "")
		if row.failed != 0 || row.moved*100 > faultSessions {
			t.Fatalf("%+v: want 0 failed and >= 99%% of sessions kept", row)
		}
	})

	t.Run("one of two replicas killed", func(t *testing.T) {
		r := newFaultRig(t, nil)
		cfg := harness.LatchConfig(r.consul.HTTPAddr, r.redis.URL, "web")
		other := harness.StartLatch(t, cfg)
		before := r.startLoad(4 * time.Second)
		r.traffic.waitSent(t, faultRate)
		r.latch.Stop(t) // its clients now reach the other replica
		r.traffic.halt()
		moved := 0
		for i, c := range r.traffic.clients {
			if id, _ := backendOf(t, withCookiesFor(c, r.latch.URL, other.URL), other.URL+"/"); id != before[i] && id != r.traffic.backend[i] {
				moved++
			}
		}
		recordFault(faultRow{name: "replica killed", sent: r.traffic.sent, failed: r.traffic.failed, moved: moved, needless: moved,
			note: "clients replayed on the other replica"})
		if moved != 0 {
			t.Fatalf("%d of %d sessions changed backend on the other replica", moved, len(r.traffic.clients))
		}
	})

	t.Run("two replicas re-pin at once", repinRace)

	t.Run("backend drained", func(t *testing.T) {
		r := newFaultRig(t, nil)
		before := r.startLoad(5 * time.Second)
		r.traffic.waitSent(t, faultRate)
		resp, err := http.Post(r.latch.AdminURL+"/admin/backends/web-1/drain", "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("drain: %v %v", err, resp)
		}
		resp.Body.Close()
		for range 100 {
			if id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, r.latch.URL+"/"); id == "web-1" {
				t.Fatal("a new session went to the drained backend")
			}
		}
		r.traffic.waitSent(t, faultRate)
		row := r.finish(t, "backend drained", before, nil, "no new session on it")
		if row.failed != 0 || row.moved != 0 {
			t.Fatalf("%+v: want 0 failed and no session moved", row)
		}
	})

	t.Cleanup(func() { printFaultTable(t) })
}

// printFaultTable logs the rows recorded so far and starts a new table.
func printFaultTable(t *testing.T) {
	faultMu.Lock()
	defer faultMu.Unlock()
	t.Log(faultTableString("fault", faultTable))
	faultTable = nil
}

// faultTableString formats rows as a Markdown table whose first column is
// headed first.
func faultTableString(first string, rows []faultRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| %s | requests | failed | sessions moved | necessary | needless | recovered in | note |\n|---|---|---|---|---|---|---|---|\n", first)
	for _, r := range rows {
		rec := "-"
		if r.recovered > 0 {
			rec = r.recovered.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n", r.name, r.sent, r.failed, r.moved, r.necessary, r.needless, rec, r.note)
	}
	return b.String()
}

// withCookiesFor copies a client's cookies for one replica to another.
func withCookiesFor(c *http.Client, from, to string) *http.Client {
	fu, tu := mustURL(from), mustURL(to)
	c.Jar.SetCookies(tu, c.Jar.Cookies(fu))
	return c
}

func breakerOf(t *testing.T, adminURL, id string) string {
	t.Helper()
	for _, s := range getBackends(t, adminURL).Services {
		for _, b := range s.Backends {
			if b.ID == id {
				return b.Breaker
			}
		}
	}
	return ""
}
