package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// heldBackend answers each request once hold is closed (nil: after
// 20 ms; /warm at once),
// counting the requests it holds at once and its open connections, and
// the most of each seen.
type heldBackend struct {
	*testBackend
	hold                                 chan struct{}
	inFlight, maxInFlight, open, maxOpen atomic.Int64
}

func newHeldBackend(t *testing.T, hold chan struct{}) *heldBackend {
	t.Helper()
	h := &heldBackend{hold: hold}
	raise := func(n int64, peak *atomic.Int64) {
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raise(h.inFlight.Add(1), &h.maxInFlight)
		defer h.inFlight.Add(-1)
		if r.URL.Path == "/warm" {
		} else if h.hold != nil {
			select {
			case <-h.hold:
			case <-r.Context().Done():
			}
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			raise(h.open.Add(1), &h.maxOpen)
		case http.StateClosed, http.StateHijacked:
			h.open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	h.testBackend = &testBackend{id: "a", srv: srv}
	return h
}

// Issue 23: with bodies read before any backend is asked, an HTTP/2
// connection's streams still took a backend connection apiece once sent:
// 100 per client connection. server.max_backend_connections_per_connection
// caps them; a stream over the cap waits for a slot (queued), and gets 503,
// counted in latch_requests_refused_total{reason="conn_backends"}, when
// none frees within transport.dial_timeout. Another client connection has
// a budget of its own.
func TestBackendConnectionsPerClientConnection(t *testing.T) {
	const budget = 4
	ca := newTestCA(t)
	for _, impl := range []string{"h1", "net/http"} {
		withWait := func(wait time.Duration) func(*config.Config) {
			return func(c *config.Config) {
				c.Server.MaxBackendConnectionsPerConnection = config.Set(budget)
				c.Transport.DialTimeout = config.Set(wait) // the queue wait
			}
		}
		// burst sends n GETs at once on client's one HTTP/2 connection
		// (opened first by a request of its own) and returns their statuses.
		burst := func(t *testing.T, tg *testGateway, client *http.Client, n int) map[int]int {
			t.Helper()
			codes := make(chan int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					resp, err := client.Get(tg.url + fmt.Sprintf("/s/%d", i))
					if err != nil {
						codes <- 0
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
						codes <- -503 // refused without saying when to come back
						return
					}
					codes <- resp.StatusCode
				})
			}
			wg.Wait()
			close(codes)
			got := map[int]int{}
			for c := range codes {
				got[c]++
			}
			return got
		}
		warm := func(t *testing.T, tg *testGateway, client *http.Client) {
			t.Helper()
			resp, err := client.Get(tg.url + "/warm")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("client speaks %s; want HTTP/2", resp.Proto)
			}
		}

		t.Run(impl+", queued", func(t *testing.T) {
			b := newHeldBackend(t, nil)
			tg := startTLSGateway(t, ca, impl, true, withWait(5*time.Second), b.testBackend)
			warm(t, tg, tg.client)
			const n = 60 // 20 ms each, 4 at a time: ~300 ms, well within the queue wait
			got := burst(t, tg, tg.client, n)
			if got[200] != n {
				t.Fatalf("statuses %v; want %d × 200 (queued, not refused)", got, n)
			}
			if m := b.maxInFlight.Load(); m > budget {
				t.Errorf("%d requests of one client connection at the backend at once; want at most %d", m, budget)
			}
			if m := b.maxOpen.Load(); m > budget {
				t.Errorf("%d backend connections open at once for one client connection; want at most %d", m, budget)
			}
		})

		t.Run(impl+", refused past the queue wait", func(t *testing.T) {
			hold := make(chan struct{})
			b := newHeldBackend(t, hold)
			tg := startTLSGateway(t, ca, impl, true, withWait(300*time.Millisecond), b.testBackend)
			refused := func() float64 {
				return counter(t, tg.g, "latch_requests_refused_total", map[string]string{"reason": "conn_backends"})
			}
			warm(t, tg, tg.client)
			const n = 10
			var got map[int]int
			done := make(chan struct{})
			go func() {
				defer close(done)
				got = burst(t, tg, tg.client, n)
			}()
			waitUntil(t, "the refusals counted", func() bool { return refused() == n-budget })
			if m := b.inFlight.Load(); m != budget {
				t.Errorf("%d requests held at the backend; want %d", m, budget)
			}

			// Another client connection has its own budget.
			other := ca.client(true)
			defer other.CloseIdleConnections()
			otherDone := make(chan int, 1)
			go func() {
				resp, err := other.Get(tg.url + "/other")
				if err != nil {
					otherDone <- 0
					return
				}
				resp.Body.Close()
				otherDone <- resp.StatusCode
			}()
			waitUntil(t, "another connection's request at the backend", func() bool { return b.inFlight.Load() == budget+1 })
			close(hold)
			<-done
			if c := <-otherDone; c != 200 {
				t.Errorf("another client connection: %d; want 200", c)
			}
			if got[200] != budget || got[http.StatusServiceUnavailable] != n-budget {
				t.Fatalf("statuses %v (-503: no Retry-After); want %d × 200 and %d × 503", got, budget, n-budget)
			}
			if m := b.maxInFlight.Load(); m > budget+1 {
				t.Errorf("%d requests at the backend at once; want at most %d", m, budget+1)
			}
		})
	}
}
