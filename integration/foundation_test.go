package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/latchgw/latch/integration/harness"
)

// Backends registered in Consul (demo-backend processes with HTTP checks)
// receive traffic within a bound.
func TestConsulBackendsReceiveTraffic(t *testing.T) {
	c := harness.StartConsul(t)
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		harness.StartBackend(t, c, id, "web", 500*time.Millisecond)
	}
	l := harness.StartLatch(t, harness.LatchConfig(c.HTTPAddr, "", "web"))
	// HTTP checks start critical until their first run (interval 500ms).
	waitPassing(t, l.AdminURL, "web", 3)
	seenAll(t, l.URL+"/", 10*time.Second, "web-1", "web-2", "web-3")
}

// Health, deregistration and maintenance mode flow from Consul to latch.
func TestConsulHealthChangesFlow(t *testing.T) {
	c := harness.StartConsul(t)
	a, b := startSwitchable(t, "a"), startSwitchable(t, "b")
	c.Register(t, "a", "web", a.addr())
	c.Register(t, "b", "web", b.addr())
	l := harness.StartLatch(t, harness.LatchConfig(c.HTTPAddr, "", "web"))
	url := l.URL + "/"
	seenAll(t, url, 10*time.Second, "a", "b")

	t.Run("critical removes", func(t *testing.T) {
		c.SetHealth(t, "a", api.HealthCritical)
		waitBackendGone(t, url, "a")
		c.SetHealth(t, "a", api.HealthPassing)
		seenAll(t, url, 10*time.Second, "a", "b")
	})
	t.Run("warning stays usable", func(t *testing.T) {
		c.SetHealth(t, "a", api.HealthWarning)
		seenAll(t, url, 10*time.Second, "a", "b")
		c.SetHealth(t, "a", api.HealthPassing)
	})
	t.Run("maintenance drains", func(t *testing.T) {
		// A session on a, then a goes into maintenance: the session stays,
		// new sessions go to b.
		sticky := harness.Client()
		harness.WaitFor(t, 10*time.Second, "a session on a", func() bool {
			sticky = harness.Client()
			id, _ := backendOf(t, sticky, url)
			return id == "a"
		})
		if err := c.Client(t).Agent().EnableServiceMaintenance("a", "test"); err != nil {
			t.Fatal(err)
		}
		waitBackendGone(t, url, "a")
		for range 20 {
			if id, status := backendOf(t, sticky, url); id != "a" || status != 200 {
				t.Fatalf("drained backend's session went to %s (%d); want it kept on a", id, status)
			}
		}
		if err := c.Client(t).Agent().DisableServiceMaintenance("a"); err != nil {
			t.Fatal(err)
		}
		seenAll(t, url, 10*time.Second, "a", "b")
	})
	t.Run("deregister removes", func(t *testing.T) {
		c.Deregister(t, "a")
		waitBackendGone(t, url, "a")
	})
	t.Run("new port keeps identity", func(t *testing.T) {
		a2 := startSwitchable(t, "a") // same service id, new port
		c.Register(t, "a", "web", a2.addr())
		seenAll(t, url, 10*time.Second, "a", "b")
		if a2.hits.Load() == 0 {
			t.Fatal("re-registered backend's new address got no traffic")
		}
	})
}

// waitBackendGone waits until 20 requests in a row avoid id.
func waitBackendGone(t *testing.T, url, id string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	clean := 0
	harness.WaitFor(t, 10*time.Second, id+" out of rotation", func() bool {
		if got, _ := backendOf(t, client, url); got == id {
			clean = 0
		} else {
			clean++
		}
		return clean >= 20
	})
}

// Killing the Consul agent under steady traffic fails no request; latch
// keeps the last snapshot, and changes flow again once Consul is back.
func TestConsulDownKeepsServing(t *testing.T) {
	c := harness.StartConsul(t)
	a, b := startSwitchable(t, "a"), startSwitchable(t, "b")
	c.Register(t, "a", "web", a.addr())
	c.Register(t, "b", "web", b.addr())
	l := harness.StartLatch(t, harness.LatchConfig(c.HTTPAddr, "", "web"))
	seenAll(t, l.URL+"/", 10*time.Second, "a", "b")

	traffic := newLoad(l.URL+"/", 50)
	traffic.warm(t)
	traffic.run(4, 200, 4000, 30*time.Second)
	traffic.waitSent(t, 200) // some traffic before the fault
	c.Kill(t)
	harness.WaitFor(t, 10*time.Second, "latch to see Consul gone (stale snapshot)", func() bool {
		return adminStale(t, l.AdminURL, "web")
	})
	traffic.waitSent(t, 300) // served from the stale snapshot
	c.Start(t)
	x := startSwitchable(t, "x")
	c.Register(t, "x", "web", x.addr())
	harness.WaitFor(t, 20*time.Second, "a backend registered after the restart to get traffic", func() bool {
		return x.hits.Load() > 0 || func() bool {
			id, _ := backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/")
			return id == "x"
		}()
	})
	traffic.halt()
	sent, failed, errs := traffic.stats()
	t.Logf("consul outage: %d requests, %d failed, %d of %d sticky clients moved", sent, failed, traffic.movedClients(), len(traffic.clients))
	if failed != 0 {
		t.Fatalf("%d of %d requests failed while Consul was down: %v", failed, sent, errs)
	}
	if moved := traffic.movedClients(); moved != 0 {
		t.Fatalf("%d sticky clients changed backend during the Consul outage; want 0: %v", moved, traffic.moveLog)
	}
	if adminStale(t, l.AdminURL, "web") {
		t.Fatal("snapshot still stale after Consul came back")
	}
}
