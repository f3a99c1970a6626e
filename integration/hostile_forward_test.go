package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward/faultyclient"
	"github.com/latchgw/latch/integration/harness"
)

// clientFaultFlood is how long each client-fault class floods latch, aimed
// at one backend and then at all of them (so each class runs twice this).
const clientFaultFlood = 5 * time.Second

// Issue 17: a few dozen broken uploads opened every breaker and all
// traffic got 503. Two replicas over real Consul and Redis; legitimate
// sticky traffic runs through both the whole time while each client-fault
// class floods both replicas, aimed at the sessions of one backend, then
// of every backend. Every broken request must get its 400/408 (or, reset,
// nothing), every breaker on both replicas stay closed, the faults be
// counted by cause, and the legitimate traffic see 0 failed requests and
// 0 moved sessions. The rows print as a table (input, expected, got).
func TestHostileClientFaults(t *testing.T) {
	r := newFaultRig(t, func(c *config.Config) {
		c.Defaults.Timeout = config.Set(time.Second) // ends the slow bodies
	})
	cfg := harness.LatchConfig(r.consul.HTTPAddr, r.redis.URL, "web")
	cfg.Defaults.Timeout = config.Set(time.Second)
	other := harness.StartLatch(t, cfg)
	replicas := []*harness.Latch{r.latch, other}
	legit := newLoadAcross([]string{r.latch.URL + "/", other.URL + "/"}, faultSessions)
	legit.warm(t)
	legit.run(faultWorkers, faultRate/2, 1<<30, time.Duration(len(faultyclient.Classes))*2*clientFaultFlood+time.Minute)

	var rows []string
	defer func() { t.Log(hostileTable(rows)) }()
	for _, k := range faultyclient.Classes {
		for _, spread := range []string{"one backend", "all backends"} {
			targets := pinnedCookies(t, legit, r.latch.URL, spread == "one backend")
			sent0, failed0, _ := legit.stats()
			counted0 := clientErrors(t, replicas, k.Cause)
			n, ok, other := flood(k, replicas, targets)
			sent, failed, errs := legit.stats()
			// A reset connection's request is finished after the client left:
			// the last ones are counted a moment later.
			var counted float64
			for wait := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if counted = clientErrors(t, replicas, k.Cause) - counted0; counted >= float64(ok) || time.Now().After(wait) {
					break
				}
			}
			opened := openedBreakers(t, replicas)
			moved := legit.movedClients()
			rows = append(rows, fmt.Sprintf("| %s, %s, 2 replicas, %s | %d × %s; %s counted; breakers closed; legit 0 failed, 0 moved | %d × %s, %d other; %.0f counted; breakers opened: %s; legit %d/%d failed, %d moved |",
				k.Name, spread, clientFaultFlood, n, wantStatus(k.Want), k.Cause,
				ok, wantStatus(k.Want), n-ok, counted, opened, failed-failed0, sent-sent0, moved))
			switch {
			case ok == 0 || ok != n:
				t.Errorf("%s, %s: %d of %d broken requests got %s (first other: %s)", k.Name, spread, ok, n, wantStatus(k.Want), other)
			case counted < float64(ok):
				t.Errorf("%s, %s: %.0f %s counted; want at least %d", k.Name, spread, counted, k.Cause, ok)
			case opened != "none":
				t.Errorf("%s, %s: breakers opened: %s", k.Name, spread, opened)
			case failed != failed0:
				t.Errorf("%s, %s: %d legitimate requests failed: %v", k.Name, spread, failed-failed0, errs)
			case moved != 0:
				t.Errorf("%s, %s: %d legitimate sessions moved: %v", k.Name, spread, moved, legit.moveLog)
			}
		}
	}
	legit.halt()
}

// flood sends broken requests of class k from 8 clients for
// clientFaultFlood, to each replica and target cookie in turn. It returns
// how many were sent, how many got the status k wants, and the first
// other outcome.
func flood(k faultyclient.Class, replicas []*harness.Latch, targets []string) (sent, matched int, other string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(clientFaultFlood)
	for w := range 8 {
		wg.Go(func() {
			// 25 a second each, 200 in all: a flood, within what a shared
			// machine's ephemeral ports take (each broken upload closes a
			// backend connection).
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			for i := w; time.Now().Before(deadline); i++ {
				<-tick.C
				l := replicas[i%len(replicas)]
				cookie := targets[i%len(targets)]
				code, err := k.Send(strings.TrimPrefix(l.URL, "http://"), "127.0.0.1", "/upload", []string{"Cookie: " + cookie}, 10*time.Second)
				mu.Lock()
				sent++
				if code == k.Want && (err == nil || k.Want == 0) {
					matched++
				} else if other == "" {
					other = fmt.Sprintf("status %d, err %v", code, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sent, matched, other
}

// pinnedCookies returns the Cookie header of a legitimate session pinned
// to each backend (one: only the first backend's).
func pinnedCookies(t *testing.T, l *load, url string, one bool) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	byBackend := map[string]string{}
	var order []string
	for i, b := range l.backend {
		if _, ok := byBackend[b]; ok || b == "" {
			continue
		}
		var parts []string
		for _, c := range l.clients[i].Jar.Cookies(mustURL(url)) {
			parts = append(parts, c.Name+"="+c.Value)
		}
		byBackend[b] = strings.Join(parts, "; ")
		order = append(order, b)
	}
	if len(order) == 0 {
		t.Fatal("no legitimate session to aim at")
	}
	var out []string
	for _, b := range order {
		out = append(out, byBackend[b])
		if one {
			break
		}
	}
	return out
}

// clientErrors sums latch_client_errors_total of cause over the replicas.
func clientErrors(t *testing.T, replicas []*harness.Latch, cause string) float64 {
	t.Helper()
	var n float64
	for _, l := range replicas {
		n += max(metricValue(t, l.AdminURL, `latch_client_errors_total{cause="`+cause+`",route="web"}`), 0)
	}
	return n
}

// openedBreakers lists the breaker transitions to open on any replica.
func openedBreakers(t *testing.T, replicas []*harness.Latch) string {
	t.Helper()
	var opened []string
	for i, l := range replicas {
		for _, line := range strings.Split(scrapeMetrics(t, l.AdminURL), "\n") {
			if strings.HasPrefix(line, "latch_breaker_transitions_total{") && strings.Contains(line, `to="open"`) {
				opened = append(opened, fmt.Sprintf("replica %d: %s", i, line))
			}
		}
	}
	if len(opened) == 0 {
		return "none"
	}
	return strings.Join(opened, "; ")
}

func wantStatus(code int) string {
	if code == 0 {
		return "no answer (reset)"
	}
	return fmt.Sprint(code)
}

func hostileTable(rows []string) string {
	return "\n| input | expected | got |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
}
