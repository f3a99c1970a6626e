package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// metricValue reads one series (name{labels} exactly) from latch's
// /metrics; -1 when absent.
func metricValue(t *testing.T, adminURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", series, v)
			}
			return f
		}
	}
	return -1
}

// The agent comes back without its state (a -dev agent restarted, a new
// node on the same address): it answers at once with a lower index and no
// instance of "web". latch holds that answer back, serves the last good
// backends (stale), and applies the backends as they register again.
func consulWithoutState(t *testing.T) {
	r := newFaultRig(t, nil)
	before := r.startLoad(40 * time.Second)
	r.traffic.waitSent(t, faultRate)
	r.consul.Kill(t)
	r.consul.Wipe(t)
	r.consul.Start(t) // a new agent: nothing registered
	up := time.Now()
	harness.WaitFor(t, 10*time.Second, "the empty answer to be held", func() bool {
		return metricValue(t, r.latch.AdminURL, `latch_discovery_empty_held_total{service="web"}`) >= 1
	})
	if v := metricValue(t, r.latch.AdminURL, `latch_discovery_stale{service="web"}`); v != 1 {
		t.Fatalf("stale = %v while the empty answer is held; want 1", v)
	}
	r.traffic.waitSent(t, 2*faultRate) // two seconds served from the held backends
	held := time.Since(up)
	for _, b := range r.backends { // the backends register again, one by one
		r.consul.Register(t, b.id, "web", b.addr())
	}
	r.freshAndRouting(t, time.Now(), 10*time.Second)
	row := r.finish(t, "consul restarted without state", before, nil,
		fmt.Sprintf("empty answer held %v (until re-registered); recovered = stale cleared after re-registration", held.Round(100*time.Millisecond)))
	if row.failed != 0 || row.moved != 0 {
		t.Fatalf("%+v: want 0 failed and no session moved", row)
	}
}

// consulCluster runs latch on a client agent of a three-server Consul
// cluster: the leader is killed (a new one is elected, a registration made
// after the election is routed), then two of three servers stop (no
// quorum: latch serves its last snapshot, stale), then they come back
// (fresh within seconds).
func consulCluster(t *testing.T) {
	cc := harness.StartConsulCluster(t)
	redis := harness.StartRedis(t)
	r := &faultRig{consul: cc.Agent, redis: redis}
	var ids []string
	for i := 1; i <= 4; i++ {
		s := startSwitchable(t, fmt.Sprintf("web-%d", i))
		cc.Agent.Register(t, s.id, "web", s.addr())
		r.backends = append(r.backends, s)
		ids = append(ids, s.id)
	}
	r.latch = harness.StartLatch(t, harness.LatchConfig(cc.Agent.HTTPAddr, redis.URL, "web"))
	seenAll(t, r.latch.URL+"/", 10*time.Second, ids...)
	r.traffic = newLoad(r.latch.URL+"/", faultSessions)
	r.traffic.warm(t)
	stale := func() float64 { return metricValue(t, r.latch.AdminURL, `latch_discovery_stale{service="web"}`) }
	before := r.startLoad(90 * time.Second)
	r.traffic.waitSent(t, faultRate)

	leader := cc.Leader(t)
	if leader == nil {
		t.Fatal("no leader before the fault")
	}
	leader.Kill(t)
	killed := time.Now()
	harness.WaitFor(t, 30*time.Second, "a new leader", func() bool { return cc.Leader(t) != nil })
	election := time.Since(killed)
	x := startSwitchable(t, "web-new")
	cc.Agent.Register(t, x.id, "web", x.addr())
	harness.WaitFor(t, 15*time.Second, "a registration after the election to get traffic", func() bool {
		id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, r.latch.URL+"/")
		return id == "web-new"
	})
	cc.Launch(t, leader) // it rejoins with its state
	harness.WaitFor(t, 30*time.Second, "fresh with three servers", func() bool { return stale() == 0 && cc.Leader(t) != nil })

	// Two of three down: no quorum, no leader.
	var down []*harness.Consul
	for _, s := range cc.Servers {
		if len(down) < 2 {
			s.Stop(t)
			down = append(down, s)
		}
	}
	harness.WaitFor(t, 20*time.Second, "stale without quorum", func() bool { return stale() == 1 })
	r.traffic.waitSent(t, 3*faultRate) // served without quorum
	for _, s := range down {
		cc.Launch(t, s)
	}
	back := time.Now()
	harness.WaitFor(t, 30*time.Second, "fresh once the quorum is back", func() bool { return stale() == 0 })
	r.recovered = time.Since(back)
	r.traffic.waitSent(t, faultRate)
	row := r.finish(t, "consul 3 servers: leader killed, then 2 of 3 down and back", before, nil,
		fmt.Sprintf("new leader in %v, registration after it routed; recovered = fresh after quorum back", election.Round(100*time.Millisecond)))
	if row.failed != 0 || row.moved != 0 {
		t.Fatalf("%+v: want 0 failed and no session moved", row)
	}
}
