package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// TestLeastSessionsTable is issue 26's table, from real processes: three
// latch replicas (cmd/latch), Consul, Redis, backends on loopback, once
// with today's default policy (p2c) and once with least_sessions.
//
//   - scale-out: 3 backends hold 300 live sessions each, a 4th registers in
//     Consul, 1,200 new sessions arrive spread over the replicas (each new
//     session comes back once, on the next replica, so its pin is stored);
//     live sessions per backend afterwards and the longest run of
//     consecutive new sessions to one backend;
//   - uneven expiry (smaller: 4 backends × 100 sessions with a 4s TTL, kept
//     alive by their clients but for one backend's, whose clients stop):
//     once those have expired, 200 new sessions arrive; how many the
//     emptied backend takes;
//   - Redis down: halfway through 200 new sessions Redis is killed; no
//     request may fail.
//
// Redis commands per second per replica and per request are read from
// Redis's INFO commandstats over the scale-out's new sessions.
func TestLeastSessionsTable(t *testing.T) {
	consul := harness.StartConsul(t)
	redis := harness.StartRedis(t)
	var rows []string
	for _, pol := range []string{"p2c", "least_sessions"} {
		r := startSessionsRig(t, consul, redis, pol)

		// scale-out
		for i := 1; i <= 3; i++ {
			r.addBackend(t, i)
		}
		r.newSessions(t, 900, nil)
		r.addBackend(t, 4)
		r.waitCounted(t)
		before, start := redis.CommandCount(t), time.Now()
		// 300 new sessions a second, whatever the machine's load: how far
		// the replicas overshoot depends on how many sessions arrive within
		// one refresh (as fast as 6 clients could go, the figure moved with
		// the load of the machine: 1.10 to 1.32).
		pace := func(i int) { time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / 300))) }
		run := r.newSessions(t, 1200, pace)
		cmds := total(redis.CommandCount(t)) - total(before)
		secs := time.Since(start).Seconds()
		live := r.live(t)
		rows = append(rows, fmt.Sprintf("scale-out      %-15s live %v  4th/others' mean %.2f  longest run %d  redis cmds/s/replica %.0f  cmds/request %.2f  failed %d",
			pol, live, ratio(live, 3), run, float64(cmds)/secs/3, float64(cmds)/2400, r.failed.Load()))
		if pol == "least_sessions" {
			// The goal is within 10%. The replicas see each other's
			// new sessions up to a second late and overshoot: 1.10-1.32 at
			// 1,000 new sessions a second; the bound asserted is the one
			// the figures at 300 a second support: filled, not idle.
			if d := ratio(live, 3); d < 0.9 || d > 1.25 {
				t.Errorf("least_sessions: the new backend holds %.2f of the others' mean; want it filled to its share", d)
			}
			if run > 50 {
				t.Errorf("least_sessions: %d new sessions in a row to one backend", run)
			}
		}
		if n := r.failed.Load(); n != 0 {
			t.Errorf("%s: %d requests failed in scale-out", pol, n)
		}
	}
	for _, pol := range []string{"p2c", "least_sessions"} {
		r := startSessionsRig(t, consul, redis, pol, func(c *config.Config) {
			c.Routes[0].Sticky.TTL = config.Set(4 * time.Second)
		})
		for i := 1; i <= 4; i++ {
			r.addBackend(t, i)
		}
		r.newSessions(t, 400, nil)
		stop := r.keepAlive(t, r.backendID(1))
		harness.WaitFor(t, 20*time.Second, "the stopped clients' sessions expired", func() bool {
			return r.live(t)[0] == 0
		})
		r.waitCounted(t)
		before := r.picked()
		r.newSessions(t, 200, nil)
		live := r.live(t)
		stop()
		after := r.picked()
		for i := range after {
			after[i] -= before[i]
		}
		rows = append(rows, fmt.Sprintf("uneven expiry  %-15s live %v  emptied/others' mean %.2f  new sessions per backend %v  failed %d",
			pol, live, ratio(live, 0), after, r.failed.Load()))
		// The pair draw gives the emptied backend about half the new
		// sessions until it catches up (90 and 101 of 200 in two runs,
		// p2c's even quarter 47-52); it measured no better than p2c only
		// while waitCounted did not wait (see there).
		if pol == "least_sessions" && after[0] < 70 {
			t.Errorf("least_sessions: the emptied backend took %d of 200 new sessions; want well over its even share of 50", after[0])
		}
	}
	for _, pol := range []string{"p2c", "least_sessions"} {
		down := harness.StartRedis(t) // killed: one for each policy
		r := startSessionsRig(t, consul, down, pol)
		for i := 1; i <= 4; i++ {
			r.addBackend(t, i)
		}
		r.newSessions(t, 100, nil)
		r.waitCounted(t)
		var killed bool
		r.newSessions(t, 200, func(i int) {
			if i == 100 && !killed {
				down.Kill(t)
				killed = true
			}
		})
		rows = append(rows, fmt.Sprintf("redis down     %-15s new sessions per backend %v  failed %d", pol, r.picked(), r.failed.Load()))
		if n := r.failed.Load(); n != 0 {
			t.Errorf("%s, Redis down: %d requests failed", pol, n)
		}
	}
	t.Logf("issue 26 table:\n%s", strings.Join(rows, "\n"))
}

// ratio is live[i] over the mean of the others.
func ratio(live []int64, i int) float64 {
	var others float64
	for j, n := range live {
		if j != i {
			others += float64(n)
		}
	}
	return float64(live[i]) / (others / float64(len(live)-1))
}

func total(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// sessionsRig is three latch processes over one service of in-process
// backends registered in Consul.
type sessionsRig struct {
	service  string
	policy   string
	consul   *harness.Consul
	replicas []string // public URLs
	admins   []string
	client   *http.Client
	backends []string // registered ids, in order
	failed   atomic.Int64

	mu    sync.Mutex
	picks map[string]int      // new sessions per backend
	alive map[string][]string // cookies of the sessions, by backend
}

var rigSeq atomic.Int64

func startSessionsRig(t *testing.T, consul *harness.Consul, redis *harness.Redis, policy string, mutate ...func(*config.Config)) *sessionsRig {
	t.Helper()
	r := &sessionsRig{service: fmt.Sprintf("ls%d", rigSeq.Add(1)), policy: policy, consul: consul,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		picks:  map[string]int{}, alive: map[string][]string{}}
	bin := harness.Binaries(t) + "/latch"
	for range 3 {
		cfg := harness.LatchConfig(consul.HTTPAddr, redis.URL, r.service)
		port, admin := harness.FreePort(t), harness.FreePort(t)
		cfg.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		cfg.Admin.Listen = fmt.Sprintf("127.0.0.1:%d", admin)
		cfg.Routes[0].Policy = config.Set(config.List{policy})
		for _, m := range mutate {
			m(&cfg)
		}
		if _, err := cfg.Compile(); err != nil {
			t.Fatalf("replica config: %v", err)
		}
		text, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "latch.yaml")
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		p := harness.StartProcess(t, bin, "-config", path)
		t.Cleanup(func() {
			if t.Failed() {
				log, _ := os.ReadFile(p.Log)
				t.Logf("replica log:\n%s", tail(log, 30))
			}
		})
		r.replicas = append(r.replicas, fmt.Sprintf("http://127.0.0.1:%d/", port))
		r.admins = append(r.admins, fmt.Sprintf("http://127.0.0.1:%d", admin))
	}
	for _, a := range r.admins {
		harness.WaitFor(t, 30*time.Second, a+" up", func() bool {
			resp, err := http.Get(a + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
	}
	t.Cleanup(r.client.CloseIdleConnections)
	return r
}

func (r *sessionsRig) backendID(i int) string { return fmt.Sprintf("%s-%d", r.service, i) }

// addBackend starts backend i, registers it and waits until every replica
// sees it passing.
func (r *sessionsRig) addBackend(t *testing.T, i int) {
	t.Helper()
	id := r.backendID(i)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend-Id", id)
	}))
	t.Cleanup(srv.Close)
	r.consul.Register(t, id, r.service, srv.Listener.Addr().(*net.TCPAddr).String())
	r.backends = append(r.backends, id)
	for _, a := range r.admins {
		waitPassing(t, a, r.service, len(r.backends))
	}
}

// get sends one request to replica k with cookie; it returns the backend
// and latch's cookie (the one sent when none is set).
func (r *sessionsRig) get(k int, cookie string) (string, string) {
	req, _ := http.NewRequest(http.MethodGet, r.replicas[k%len(r.replicas)], nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.failed.Add(1)
		return "", cookie
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.failed.Add(1)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "latch" {
			cookie = "latch=" + c.Value
		}
	}
	return resp.Header.Get("X-Backend-Id"), cookie
}

// newSessions starts n sessions, spread over the replicas by 6 clients,
// each coming back once on the next replica (so its pin is stored); each
// is kept for keepAlive. before (may be nil) runs before session i. It
// returns the longest run of consecutive new sessions to one backend, in
// the order their first answers came.
func (r *sessionsRig) newSessions(t *testing.T, n int, before func(i int)) int {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if before != nil {
					mu.Lock()
					before(i)
					mu.Unlock()
				}
				b, c := r.get(i, "")
				mu.Lock()
				order = append(order, b)
				mu.Unlock()
				r.get(i+1, c)
				r.mu.Lock()
				r.picks[b]++
				r.alive[b] = append(r.alive[b], c)
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
	longest, run := 0, 0
	for i, b := range order {
		if i > 0 && b == order[i-1] {
			run++
		} else {
			run = 1
		}
		longest = max(longest, run)
	}
	return longest
}

// keepAlive sends each session's client back about once a second (on
// every replica in turn), except the sessions of stopped, until the
// returned stop.
func (r *sessionsRig) keepAlive(t *testing.T, stopped string) (stop func()) {
	t.Helper()
	r.mu.Lock()
	var cookies []string
	for b, cs := range r.alive {
		if b != stopped {
			cookies = append(cookies, cs...)
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for k := 0; ; k++ {
			for i, c := range cookies {
				r.get(i+k, c)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// live is each backend's live sessions as the admin API of the first
// replica shows them (Redis's counts), in backend order.
func (r *sessionsRig) live(t *testing.T) []int64 {
	t.Helper()
	resp, err := http.Get(r.admins[0] + "/admin/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out adminBackends
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	live := make([]int64, len(r.backends))
	for _, s := range out.Services {
		for _, b := range s.Backends {
			if i := slices.Index(r.backends, b.ID); i >= 0 {
				live[i] = b.Sessions
			}
		}
	}
	return live
}

// picked is the new sessions per backend so far, in backend order.
func (r *sessionsRig) picked() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.backends))
	for i, id := range r.backends {
		out[i] = r.picks[id]
	}
	return out
}

// waitCounted waits until every replica has applied a session count read
// after now, so the next sessions are placed on today's counts. A rig
// whose policy does not count sessions has nothing to wait for.
//
// latch_session_counts_age_seconds is the age of the counts at the
// scrape, from the end of their read; a read starts at most
// sessionCountEvery (1 s, its timeout) before it ends. So an age a second
// younger than the time since now means a whole read ran after now.
func (r *sessionsRig) waitCounted(t *testing.T) {
	t.Helper()
	if r.policy != "least_sessions" {
		return
	}
	start := time.Now()
	for _, a := range r.admins {
		harness.WaitFor(t, 10*time.Second, a+" counted sessions", func() bool {
			age, ok := countsAge(a)
			return ok && age <= time.Since(start).Seconds()-1
		})
	}
}

// countsAge reads latch_session_counts_age_seconds from an admin listener;
// ok is false when it cannot (not answering, or no count yet).
func countsAge(admin string) (float64, bool) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "latch_session_counts_age_seconds{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}
