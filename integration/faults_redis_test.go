package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// storeFailover is one row of the store-failover suite: four static
// backends, two latch replicas on the Redis deployment at redisURL, every
// client alternating between the replicas under steady load. kill takes
// the primary down; promoted reports when the deployment serves writes
// again. The row checks: 0 failed requests, ≥ 99.9% of sessions on their
// backend, every pin made during the failover in the store afterwards, and
// re-pin invalidation (pub/sub) working across replicas after it.
func storeFailover(t *testing.T, name, redisURL string, kill func(), promoted func() bool) {
	t.Helper()
	var addrs []string
	addrOf := map[string]string{} // X-Backend-Id → the static backend's id (its address)
	for i := 1; i <= 4; i++ {
		s := startSwitchable(t, fmt.Sprintf("web-%d", i))
		addrs = append(addrs, s.addr())
		addrOf[s.id] = s.addr()
	}
	cfg := harness.LatchConfig("", redisURL, "web")
	cfg.Consul.Disabled = true
	cfg.Routes[0].Backends = addrs
	a, b := harness.StartLatch(t, cfg), harness.StartLatch(t, cfg)
	traffic := newLoadAcross([]string{a.URL + "/", b.URL + "/"}, faultSessions)
	traffic.warm(t)
	traffic.warm(t) // each session back once: its pin goes to the store
	harness.WaitFor(t, 20*time.Second, "every warm session's pin in the store", func() bool {
		for _, c := range traffic.clients {
			if storedPin(t, a.AdminURL, c, a.URL) == "" {
				return false
			}
		}
		return true
	})
	traffic.run(faultWorkers, faultRate, 30*faultRate, 30*time.Second)
	traffic.waitSent(t, faultRate)
	start := time.Now()
	kill()
	// New sessions while the primary is down and being replaced.
	type fresh struct {
		c       *http.Client
		backend string
	}
	var during []fresh
	for len(during) < 200 && (len(during) < 20 || !promoted()) {
		c := harness.Client()
		base := []string{a.URL, b.URL}[len(during)%2]
		id, status := backendOf(t, c, base+"/")
		again, status2 := backendOf(t, c, base+"/") // back once: pinned
		if status != 200 || status2 != 200 || again != id {
			t.Fatalf("new session during the failover: status %d, then %d on %s (first on %s)", status, status2, again, id)
		}
		during = append(during, fresh{c, id})
		time.Sleep(50 * time.Millisecond)
	}
	harness.WaitFor(t, 30*time.Second, "the replica promoted", promoted)
	promotion := time.Since(start)
	traffic.waitSent(t, 2*faultRate)
	traffic.halt()
	sent, failed, errs := traffic.stats()
	moved := traffic.movedClients()
	if failed > 0 {
		t.Logf("%s: failures: %v", name, errs)
	}
	// Pins made during the failover reach the new primary (replayed).
	missing := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing = 0
		for _, f := range during {
			if storedPin(t, b.AdminURL, f.c, b.URL) != addrOf[f.backend] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if missing > 0 {
		t.Fatalf("%s: %d of %d pins made during the failover never reached the new primary",
			name, missing, len(during))
	}
	// An unpin on one replica reaches the other's cache (pub/sub resubscribed).
	harness.WaitFor(t, 20*time.Second, "an unpin on one replica to drop the other's cached pin", func() bool {
		c := harness.Client()
		backendOf(t, c, b.URL+"/") // b pins and caches it
		cookie := latchCookie(t, c, b.URL)
		if cookie == "" || adminSessionStatus(t, b.AdminURL, cookie, "") != 200 {
			return false
		}
		req, _ := http.NewRequest(http.MethodDelete, a.AdminURL+"/admin/sessions/"+url.PathEscape(cookie)+"?service=web", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if adminSessionStatus(t, b.AdminURL, cookie, "") == 404 {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	recordFault(faultRow{name: name, sent: sent, failed: failed, moved: moved, needless: moved, recovered: promotion,
		note: fmt.Sprintf("2 replicas; %d pins made during the failover all in the new primary; invalidation across replicas after it", len(during))})
	if failed != 0 || moved*1000 > faultSessions {
		t.Fatalf("%s: %d of %d failed, %d of %d sessions moved; want 0 failed and ≥ 99.9%% kept", name, failed, sent, moved, faultSessions)
	}
}

// storedPin is the backend the store holds for c's session ("" if none
// or unreachable), asked through a latch replica's admin API.
func storedPin(t *testing.T, adminURL string, c *http.Client, base string) string {
	t.Helper()
	cookie := latchCookie(t, c, base)
	if cookie == "" {
		return ""
	}
	resp, err := http.Get(adminURL + "/admin/sessions/" + url.PathEscape(cookie) + "?service=web&source=store")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out struct{ Pins map[string]string }
	if resp.StatusCode != 200 || decodeJSON(resp, &out) != nil {
		return ""
	}
	return out.Pins["web"]
}

// adminSessionStatus is the status of /admin/sessions/<cookie> (source ""
// = cache then store).
func adminSessionStatus(t *testing.T, adminURL, cookie, source string) int {
	t.Helper()
	resp, err := http.Get(adminURL + "/admin/sessions/" + url.PathEscape(cookie) + "?service=web&source=" + source)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
