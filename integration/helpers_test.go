package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// backendOf GETs url with client and returns the answering backend's id
// (empty on error) and the status.
func backendOf(t *testing.T, client *http.Client, url string) (string, int) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Backend-Id"), resp.StatusCode
}

// scrapeMetrics returns latch's /metrics page as text.
func scrapeMetrics(t *testing.T, adminURL string) string {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// seenAll sends requests without cookies until every id answered or
// timeout passes.
func seenAll(t *testing.T, url string, timeout time.Duration, ids ...string) {
	t.Helper()
	seen := map[string]bool{}
	client := &http.Client{Timeout: 5 * time.Second}
	harness.WaitFor(t, timeout, fmt.Sprintf("traffic on every backend of %v", ids), func() bool {
		id, _ := backendOf(t, client, url)
		seen[id] = true
		for _, want := range ids {
			if !seen[want] {
				return false
			}
		}
		return true
	})
}

// never sends n requests without cookies and fails if one reaches id.
func never(t *testing.T, url, id string, n int) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range n {
		got, status := backendOf(t, client, url)
		if got == id {
			t.Fatalf("request %d reached %s; want it excluded", i, id)
		}
		if status != 200 {
			t.Fatalf("request %d: status %d", i, status)
		}
	}
}

// load is steady traffic over a set of sticky clients (cookie jars),
// bounded by count and time, recording every failure and backend change.
type load struct {
	clients []*http.Client
	urls    []string // each client's requests go round these (latch replicas)

	mu       sync.Mutex
	sent     int
	failed   int
	errs     []string
	backend  []string   // last backend per client
	turn     []int      // requests per client, to rotate over urls
	moves    []int      // backend changes per client
	moveLog  []string   // the first moves, for failure messages
	hist     [][]string // each client's moves
	left     [][]string // the backends each client moved away from
	flaps    []int      // moves back to a backend the client had left
	stop     chan struct{}
	finished chan struct{}
}

func newLoad(url string, clients int) *load { return newLoadAcross([]string{url}, clients) }

// newLoadAcross is a load whose clients send their requests to each of
// urls in turn (cookies are per host, not port: every replica sees them).
func newLoadAcross(urls []string, clients int) *load {
	l := &load{urls: urls, stop: make(chan struct{}), finished: make(chan struct{})}
	for range clients {
		l.clients = append(l.clients, harness.Client())
	}
	l.backend = make([]string, clients)
	l.moves = make([]int, clients)
	l.turn = make([]int, clients)
	l.hist = make([][]string, clients)
	l.left = make([][]string, clients)
	l.flaps = make([]int, clients)
	return l
}

// warm sends one request per client so each has a session.
func (l *load) warm(t *testing.T) {
	t.Helper()
	for i := range l.clients {
		l.do(i)
	}
	if l.failed > 0 {
		t.Fatalf("warming sessions: %d failures: %v", l.failed, l.errs)
	}
}

func (l *load) do(i int) {
	l.mu.Lock()
	url := l.urls[l.turn[i]%len(l.urls)]
	l.turn[i]++
	l.mu.Unlock()
	resp, err := l.clients[i].Get(url)
	var id string
	ok := false
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id = resp.Header.Get("X-Backend-Id")
		ok = resp.StatusCode/100 == 2
		if !ok {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	if !ok {
		l.failed++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	if l.backend[i] != "" && l.backend[i] != id {
		l.moves[i]++
		if slices.Contains(l.left[i], id) {
			l.flaps[i]++
		}
		l.left[i] = append(l.left[i], l.backend[i])
		if len(l.moveLog) < 20 {
			l.moveLog = append(l.moveLog, fmt.Sprintf("client %d: %s → %s at %s", i, l.backend[i], id, time.Now().Format("15:04:05.000")))
		}
		if len(l.hist[i]) < 6 {
			l.hist[i] = append(l.hist[i], fmt.Sprintf("%s→%s@%s", l.backend[i], id, time.Now().Format("05.000")))
		}
	}
	l.backend[i] = id
}

// run sends requests from `workers` goroutines, each cycling over the
// clients, at most rate requests/s in all, until stopped, max requests or
// maxTime.
func (l *load) run(workers, rate, max int, maxTime time.Duration) {
	go func() {
		defer close(l.finished)
		var wg sync.WaitGroup
		var n atomic.Int64
		interval := time.Duration(int64(time.Second) * int64(workers) / int64(rate))
		deadline := time.Now().Add(maxTime)
		for w := range workers {
			wg.Go(func() {
				tick := time.NewTicker(interval)
				defer tick.Stop()
				for i := w; ; i += workers {
					select {
					case <-l.stop:
						return
					case <-tick.C:
					}
					if n.Add(1) > int64(max) || time.Now().After(deadline) {
						return
					}
					l.do(i % len(l.clients))
				}
			})
		}
		wg.Wait()
	}()
}

func (l *load) halt() {
	close(l.stop)
	<-l.finished
}

func (l *load) stats() (sent, failed int, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.failed, append([]string(nil), l.errs...)
}

// movedClients counts clients whose backend changed at least once.
func (l *load) movedClients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.moves {
		if m > 0 {
			n++
		}
	}
	return n
}

// flapped counts clients that moved back to a backend they had left, and
// the most moves of one client.
func (l *load) flapped() (flapped, maxMoves int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, f := range l.flaps {
		if f > 0 {
			flapped++
		}
		maxMoves = max(maxMoves, l.moves[i])
	}
	return flapped, maxMoves
}

// waitSent waits until n more requests have been sent.
func (l *load) waitSent(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	target := l.sent + n
	l.mu.Unlock()
	harness.WaitFor(t, 30*time.Second, fmt.Sprintf("%d more requests", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sent >= target
	})
}
