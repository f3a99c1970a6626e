package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// TestFaultSuiteHosts is the fault suite over three latch replicas on
// hosts of their own: network namespaces on a bridge, each replica a latch
// process with its own address and firewall. Consul, Redis and four
// backends (each on its own address) run in the root namespace. Under
// load spread over the three replicas, one link is cut at a time (nftables
// drops its packets both ways, as a partition does) and healed. It prints
// its own table (go test -v -run TestFaultSuiteHosts ./integration/; root
// only: see harness.NeedNetns).
func TestFaultSuiteHosts(t *testing.T) {
	harness.NeedNetns(t)
	t.Cleanup(func() { printFaultTable(t) })
	r := newHostsRig(t)
	t.Run("replica cut from redis", r.redisCut)
	t.Run("replica cut from consul", r.consulCut)
	t.Run("backend cut from one replica", r.backendCut)
}

type hostsRig struct {
	hosts             *harness.Hosts
	consul            *harness.Consul
	consulAt, redisAt string // Consul's and Redis's addresses as the replicas reach them
	backends          []*switchable
	replicas          []*replica
	transport         *http.Transport // resolves rN.latch.test to replica N's address
}

// replica is a latch process on a host of its own. Its clients reach it
// as rN.latch.test, and the affinity cookie is for latch.test: one
// browser's cookie goes to every replica, as behind one DNS name.
type replica struct {
	host       *harness.Host
	url, admin string
	proc       *harness.Process
}

func newHostsRig(t *testing.T) *hostsRig {
	t.Helper()
	hosts := harness.StartHosts(t, 3)
	r := &hostsRig{hosts: hosts}
	r.consul = harness.StartConsulAlso(t, hosts.Gateway)
	r.consulAt = net.JoinHostPort(hosts.Gateway, portOf(t, r.consul.HTTPAddr))
	redis := harness.StartRedisWith(t, "--bind", "127.0.0.1", hosts.Gateway)
	r.redisAt = net.JoinHostPort(hosts.Gateway, portOf(t, redis.Addr))
	var ids []string
	for i := 1; i <= 4; i++ {
		s := startSwitchableOn(t, fmt.Sprintf("web-%d", i), hosts.AddAddr(t))
		r.consul.Register(t, s.id, "web", s.addr())
		r.backends = append(r.backends, s)
		ids = append(ids, s.id)
	}
	port, adminPort := strconv.Itoa(harness.FreePort(t)), strconv.Itoa(harness.FreePort(t))
	names := map[string]string{}
	for i, h := range hosts.Hosts {
		cfg := harness.LatchConfig(r.consulAt, "redis://"+r.redisAt+"/0", "web")
		cfg.Listen = net.JoinHostPort(h.IP, port)
		cfg.Admin.Listen = net.JoinHostPort(h.IP, adminPort)
		cfg.Defaults.Sticky.Domain = config.Set("latch.test")
		name := fmt.Sprintf("r%d.latch.test", i+1)
		names[name] = h.IP
		rep := &replica{host: h, url: "http://" + name + ":" + port + "/", admin: "http://" + net.JoinHostPort(h.IP, adminPort)}
		rep.proc = harness.StartLatchProcess(t, h, cfg).Process // ready when it returns
		t.Cleanup(func() {
			if t.Failed() {
				log, _ := os.ReadFile(rep.proc.Log)
				t.Logf("%s (%s) log:\n%s", name, h.IP, tail(log, 40))
			}
		})
		r.replicas = append(r.replicas, rep)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	r.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil && names[host] != "" {
				addr = net.JoinHostPort(names[host], port)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
	}
	t.Cleanup(r.transport.CloseIdleConnections)
	for _, rep := range r.replicas {
		waitPassing(t, rep.admin, "web", len(ids))
	}
	return r
}

// load is sticky traffic over clients sending each request to the next of
// urls (every replica by default), warmed: each client has a session.
func (r *hostsRig) load(t *testing.T, clients int, urls ...string) (*load, []string) {
	t.Helper()
	if len(urls) == 0 {
		for _, rep := range r.replicas {
			urls = append(urls, rep.url)
		}
	}
	l := newLoadAcross(urls, clients)
	for _, c := range l.clients {
		c.Transport = r.transport
	}
	l.warm(t)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l, append([]string(nil), l.backend...)
}

func (r *hostsRig) stale(t *testing.T, rep *replica) float64 {
	t.Helper()
	return metricValue(t, rep.admin, `latch_discovery_stale{service="web"}`)
}

// redisCut: replica 1 loses Redis (and only Redis). Its sessions stay, by
// its cache and the cookie's signed hint; sessions it starts meanwhile
// are pinned once Redis is back.
func (r *hostsRig) redisCut(t *testing.T) {
	r1, r2 := r.replicas[0], r.replicas[1]
	l, before := r.load(t, faultSessions)
	l.run(faultWorkers, faultRate, 30*faultRate, 30*time.Second)
	l.waitSent(t, faultRate)
	r1.host.Cut(t, r.redisAt)
	t.Cleanup(func() { r1.host.Heal(t) })
	cut := time.Now()
	fresh, _ := r.load(t, 20, r1.url) // new sessions on r1: their pins wait for Redis
	fresh.warm(t)                     // a session's second request writes its pin (issue 17)
	l.waitSent(t, 3*faultRate)
	r1.host.Heal(t)
	healed := time.Now()
	outage := healed.Sub(cut)
	harness.WaitFor(t, 30*time.Second, "the pins replica 1 made while cut off in Redis", func() bool {
		for i, c := range fresh.clients {
			if storedPin(t, r2.admin, c, r1.url) != fresh.backend[i] {
				return false
			}
		}
		return true
	})
	flushed := time.Since(healed)
	l.waitSent(t, faultRate)
	row := l.finish(t, "hosts: replica 1 cut from Redis only", before, nil,
		fmt.Sprintf("3 replicas; cut %v; %d sessions started on it meanwhile, pinned in Redis after it (recovered in)", outage.Round(100*time.Millisecond), len(fresh.clients)))
	row.sent, row.failed, row.recovered = row.sent+fresh.sent, row.failed+fresh.failed, flushed
	recordFault(row)
	if row.failed != 0 || row.moved != 0 {
		t.Fatalf("%+v: want 0 failed and no session moved", row)
	}
}

// consulCut: replica 2 loses Consul (and only Consul). It serves its last
// snapshot, marked stale, while the others stay fresh; fresh again once
// the link is back.
func (r *hostsRig) consulCut(t *testing.T) {
	r2 := r.replicas[1]
	others := []*replica{r.replicas[0], r.replicas[2]}
	l, before := r.load(t, faultSessions)
	l.run(faultWorkers, faultRate, 40*faultRate, 40*time.Second)
	l.waitSent(t, faultRate)
	r2.host.Cut(t, r.consulAt)
	t.Cleanup(func() { r2.host.Heal(t) })
	cut := time.Now()
	harness.WaitFor(t, 30*time.Second, "replica 2 stale", func() bool { return r.stale(t, r2) == 1 })
	noticed := time.Since(cut)
	l.waitSent(t, 2*faultRate) // served from its last snapshot
	for _, o := range others {
		if v := r.stale(t, o); v != 0 {
			t.Fatalf("%s stale = %v while only replica 2 is cut from Consul; want 0", o.admin, v)
		}
	}
	if v := r.stale(t, r2); v != 1 {
		t.Fatalf("replica 2 stale = %v while cut from Consul; want 1", v)
	}
	r2.host.Heal(t)
	healed := time.Now()
	harness.WaitFor(t, 30*time.Second, "replica 2 fresh again", func() bool { return r.stale(t, r2) == 0 })
	recovered := time.Since(healed)
	l.waitSent(t, faultRate)
	row := l.finish(t, "hosts: replica 2 cut from Consul only", before, nil,
		fmt.Sprintf("stale on replica 2 only, %v after the cut; recovered = fresh after the link is back", noticed.Round(100*time.Millisecond)))
	row.recovered = recovered
	recordFault(row)
	if row.failed != 0 || row.moved != 0 {
		t.Fatalf("%+v: want 0 failed and no session moved", row)
	}
}

// backendCut: web-1 stays reachable from replicas 1 and 2 (and Consul)
// but not from replica 3. Its sessions move once, when they reach replica
// 3, and stay moved on every replica: no flapping between the views.
func (r *hostsRig) backendCut(t *testing.T) {
	r3, victim := r.replicas[2], r.backends[0]
	l, before := r.load(t, faultSessions)
	on := 0
	for _, b := range before {
		if b == victim.id {
			on++
		}
	}
	l.run(faultWorkers, faultRate, 40*faultRate, 40*time.Second)
	l.waitSent(t, faultRate)
	r3.host.Cut(t, victim.srv.Listener.Addr().(*net.TCPAddr).IP.String())
	t.Cleanup(func() { r3.host.Heal(t) })
	cut := time.Now()
	harness.WaitFor(t, 30*time.Second, "every session of web-1 moved", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, b := range l.backend {
			if before[i] == victim.id && b == victim.id {
				return false
			}
		}
		return true
	})
	moved := time.Since(cut)
	l.waitSent(t, 3*faultRate) // each client visits every replica again
	r3.host.Heal(t)
	l.waitSent(t, 2*faultRate) // and again once replica 3 reaches web-1
	row := l.finish(t, "hosts: web-1 cut from replica 3 only", before, []string{victim.id},
		fmt.Sprintf("%d sessions on web-1, moved once on replica 3 and kept there by the others (recovered in = all moved); 0 flaps", on))
	row.recovered = moved
	flapped, most := l.flapped()
	if flapped > 0 {
		row.note = fmt.Sprintf("%d sessions on web-1; %d FLAPPED back", on, flapped)
	}
	// Unavoidable: a request replica 3 had just sent to web-1 on a pooled
	// connection when the link went silent is never answered, and a sent
	// request is not resent after a timeout (a silent link looks like a
	// slow backend): the client's timeout ends it. One per connection
	// replica 3 had open to web-1, at most one per load worker; every
	// later request dials, times out dialing (nothing sent) and goes to
	// another backend.
	_, _, errs := l.stats()
	for _, e := range errs {
		if !strings.Contains(e, "r3.latch.test") || !strings.Contains(e, "Timeout") {
			t.Errorf("failure %q: want only client timeouts on replica 3", e)
		}
	}
	if row.failed > 0 {
		row.note += fmt.Sprintf("; failed: requests replica 3 had sent to web-1 on pooled connections as the link went silent, unanswered, ended by the client's %v timeout (not resent after a timeout: a silent link looks like a slow backend); at most one per connection", harness.Client().Timeout)
	}
	recordFault(row)
	if row.failed > faultWorkers || row.needless != 0 || flapped != 0 || most > 1 {
		t.Fatalf("%+v: %d sessions flapped, at most %d moves per session; want ≤ %d failed (one per pooled connection), 0 needless, 0 flaps, ≤ 1 move per session",
			row, flapped, most, faultWorkers)
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// tail is the last n lines of b.
func tail(b []byte, n int) string {
	end := len(b)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' && i != len(b)-1 {
			if n--; n == 0 {
				return string(b[i+1 : end])
			}
		}
	}
	return string(b)
}
