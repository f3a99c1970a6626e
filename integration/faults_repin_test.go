package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// repinSessions is how many sessions the racing re-pin row follows.
const repinSessions = 10_000

// repinRace (issue 12): two replicas that both know a session re-pin it at
// the same moment when its backend dies. Each session on the killed backend
// gets one request through each replica at once; compare-and-swap in the
// store must make both answer from the same new backend, and a second
// request through each must stay there (no flapping between the replicas'
// views).
func repinRace(t *testing.T) {
	r := newFaultRig(t, nil)
	a, b := r.latch, harness.StartLatch(t, harness.LatchConfig(r.consul.HTTPAddr, r.redis.URL, "web"))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer client.CloseIdleConnections()
	get := func(url, cookie string) (backend string, status int, setCookie string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", 0, ""
		}
		resp.Body.Close()
		return resp.Header.Get("X-Backend-Id"), resp.StatusCode, strings.SplitN(resp.Header.Get("Set-Cookie"), ";", 2)[0]
	}
	// each runs f(i) for every session on 16 workers.
	each := func(n int, f func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					f(i)
				}
			})
		}
		wg.Wait()
	}

	// Sessions made on replica a, then seen once through b: both know them.
	cookies, pinned := make([]string, repinSessions), make([]string, repinSessions)
	var failed, disagreeBefore atomic.Int64
	each(repinSessions, func(i int) {
		id, st, c := get(a.URL+"/", "")
		if st != http.StatusOK || c == "" {
			failed.Add(1)
			return
		}
		cookies[i], pinned[i] = c, id
		if other, st, _ := get(b.URL+"/", c); st != http.StatusOK {
			failed.Add(1)
		} else if other != id {
			disagreeBefore.Add(1)
		}
	})
	var victims []int
	for i, id := range pinned {
		if id == "web-1" {
			victims = append(victims, i)
		}
	}
	if failed.Load() != 0 || disagreeBefore.Load() != 0 || len(victims) == 0 {
		t.Fatalf("setup: %d failed, %d sessions answered by different backends on the two replicas, %d on web-1",
			failed.Load(), disagreeBefore.Load(), len(victims))
	}

	r.backends[0].srv.Close() // web-1 dies: connections refused
	var disagree, flaps, stayed atomic.Int64
	each(len(victims), func(k int) {
		c := cookies[victims[k]]
		var ids [2]string
		var codes [2]int
		var wg sync.WaitGroup
		for j, url := range []string{a.URL + "/", b.URL + "/"} {
			wg.Go(func() { ids[j], codes[j], _ = get(url, c) })
		}
		wg.Wait()
		if codes[0] != http.StatusOK || codes[1] != http.StatusOK {
			failed.Add(1)
			return
		}
		if ids[0] != ids[1] {
			disagree.Add(1)
		}
		if ids[0] == "web-1" || ids[1] == "web-1" {
			stayed.Add(1)
		}
		// Again through each: the session stays where the race put it.
		for _, url := range []string{a.URL + "/", b.URL + "/"} {
			if id, st, _ := get(url, c); st != http.StatusOK {
				failed.Add(1)
			} else if id != ids[0] {
				flaps.Add(1)
			}
		}
	})
	row := faultRow{name: "two replicas re-pin at once (backend killed)", sent: 4 * len(victims),
		failed: int(failed.Load()), moved: len(victims) - int(stayed.Load()), necessary: len(victims) - int(stayed.Load()),
		needless: int(disagree.Load() + flaps.Load()),
		note: fmt.Sprintf("%d sessions known to both replicas, %d on the killed backend: %d answered by different backends, %d moved again after",
			repinSessions, len(victims), disagree.Load(), flaps.Load())}
	recordFault(row)
	if row.failed != 0 || row.needless != 0 || stayed.Load() != 0 {
		t.Fatalf("%+v: want 0 failed, every session on one new backend through both replicas", row)
	}
}
