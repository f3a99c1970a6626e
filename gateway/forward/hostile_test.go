package forward

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward/faultyclient"
	"github.com/latchgw/latch/policy"
)

// Issue 17: requests with a body went through ReverseProxy, whose
// response parsing relayed a 10 MB head, folded headers and 10,000
// unsolicited 100 Continue, and panicked into a 500 on status 099. One
// framing policy now, whatever the method: each of these is a 502 and a
// failure of the backend (its breaker, at one failure, opens).
func TestResponseFraming(t *testing.T) {
	const ok = "Content-Length: 2\r\n\r\nok"
	tests := []struct {
		name     string
		response string
		want     int
	}{
		{"head over max_response_header_bytes", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\n" + ok, 502},
		{"folded header", "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n" + ok, 502},
		{"header line without a colon", "HTTP/1.1 200 OK\r\nno colon here\r\n" + ok, 502},
		{"header name with a space", "HTTP/1.1 200 OK\r\nX A: 1\r\n" + ok, 502},
		{"status 099", "HTTP/1.1 099 Odd\r\n" + ok, 502},
		{"status 600", "HTTP/1.1 600 Odd\r\n" + ok, 502},
		{"status not a number", "HTTP/1.1 2x0 OK\r\n" + ok, 502},
		{"1xx flood", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10000) + "HTTP/1.1 200 OK\r\n" + ok, 502},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 502},
		{"differing duplicate Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 502},
		{"Transfer-Encoding not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", 502},
		{"identical duplicate Content-Length (relayed once)", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 200},
		{"two interim responses (allowed)", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n" + ok, 200},
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for _, tt := range tests {
			t.Run(method+"/"+tt.name, func(t *testing.T) {
				backend := loopbackBackend(t, func(c net.Conn) {
					defer c.Close()
					req, err := http.ReadRequest(bufio.NewReader(c))
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, tt.response)
				})
				r := newRig(t, false, config.Route{}, func(c *config.Config) {
					c.Defaults.Retry.Attempts = config.Set(1)
					c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
					c.Defaults.Breaker.OpenTimeout = config.Set(time.Minute)
				}, backend)
				req := get("/", nil)
				if method == http.MethodPost {
					req = post("/", "a body")
				}
				w, res := r.do(req)
				if w.Code != tt.want || res.Status != tt.want {
					t.Fatalf("status %d (result %d); want %d", w.Code, res.Status, tt.want)
				}
				open := r.set.Backends[0].Breaker() == policy.Open
				if open != (tt.want == 502) {
					t.Fatalf("breaker open: %v; want %v (one failure opens it)", open, tt.want == 502)
				}
				if tt.want == 200 {
					if cl := w.Result().Header["Content-Length"]; len(cl) != 1 || w.Body.String() != "ok" {
						t.Fatalf("Content-Length %q, body %q; want one \"2\" and \"ok\"", cl, w.Body)
					}
				}
			})
		}
	}
}

// Issue 17: a body the client broke was the backend's failure: ten such
// requests opened a healthy backend's breaker. Each class, aimed at one
// backend or at all of them, must leave every breaker closed, every
// latency statistic untouched and every session where it was; the client
// gets 400 (408 for a timeout) and the fault is counted by cause.
func TestClientFaultsAreNotBackendFaults(t *testing.T) {
	for _, k := range faultyclient.Classes {
		for _, spread := range []string{"one backend", "all backends"} {
			t.Run(k.Name+"/"+spread, func(t *testing.T) {
				h := newHostileRig(t)
				targets := []string{"b0"}
				if spread == "all backends" {
					targets = []string{"b0", "b1", "b2"}
				}
				before := h.latencies()
				for i := range 12 {
					b := targets[i%len(targets)]
					got, err := k.Send(h.addr, "shop.example.com", "/upload", []string{"X-Backend: " + b}, 10*time.Second)
					if err != nil && k.Want != 0 || got != k.Want {
						t.Fatalf("request %d to %s: status %d (err %v); want %d", i, b, got, err, k.Want)
					}
				}
				h.obs.waitFor(t, k.Cause, 12)
				if after := h.latencies(); after != before {
					t.Errorf("latency statistics %v, were %v: a client fault reached them", after, before)
				}
				h.checkUntouched(t)
			})
		}
	}
}

// hostileRig serves a rig through a real listener (the client faults need
// a connection to break), with three echo backends whose breakers open at
// one failure, and a session pinned by the X-Backend header.
type hostileRig struct {
	*rig
	addr string
	obs  *countingObserver
}

func newHostileRig(t *testing.T) *hostileRig {
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = strings.TrimPrefix(echo(t, fmt.Sprintf("b%d", i)).URL, "http://")
	}
	r := newRig(t, false, config.Route{}, func(c *config.Config) {
		c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
		c.Defaults.Breaker.OpenTimeout = config.Set(time.Minute)
		c.Defaults.Timeout = config.Set(300 * time.Millisecond) // ends the slow bodies
	}, addrs...)
	obs := &countingObserver{counts: map[string]int{}}
	r.f.obs = obs
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if res := r.f.Serve(w, req, r.spec, pinnedSession{r}); res.Abort {
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	return &hostileRig{rig: r, addr: srv.Listener.Addr().String(), obs: obs}
}

func (h *hostileRig) latencies() string {
	var s []string
	for _, b := range h.set.Backends {
		s = append(s, b.Latency().String())
	}
	return strings.Join(s, " ")
}

// checkUntouched checks every breaker is closed and each backend still
// answers the requests pinned to it.
func (h *hostileRig) checkUntouched(t *testing.T) {
	t.Helper()
	for _, b := range h.set.Backends {
		if s := b.Breaker(); s != policy.Closed {
			t.Errorf("%s's breaker is %v; want closed", b.ID, s)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.addr+"/after", strings.NewReader("legit"))
		req.Header.Set("X-Backend", b.ID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), b.ID+" POST /after") {
			t.Errorf("request pinned to %s: %d %q", b.ID, resp.StatusCode, body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// pinnedSession offers the backend named by the X-Backend header, then the
// others in order.
type pinnedSession struct{ r *rig }

func (s pinnedSession) Pick(req *http.Request, skip *policy.Skip) (*policy.Backend, func(http.Header, *policy.Backend)) {
	for _, b := range s.r.set.Backends {
		if b.ID == req.Header.Get("X-Backend") && !skip.Has(b) {
			return b, nil
		}
	}
	b, _ := rigSession(s).Pick(req, skip)
	return b, nil
}

func (pinnedSession) Waiting() bool                           { return false }
func (pinnedSession) Settle(*http.Request, *policy.Skip) bool { return false }
func (pinnedSession) Upstream(*policy.Backend, time.Duration) {}

type countingObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func (*countingObserver) Retry(string) {}

func (o *countingObserver) ClientError(_, cause string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[cause]++
}

func (o *countingObserver) Refused(cause string) { o.ClientError("", cause) }

// waitFor waits until n faults of cause were counted (the server handles
// a reset connection after the client has gone), and that no other cause
// was.
func (o *countingObserver) waitFor(t *testing.T, cause string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		got, all := o.counts[cause], fmt.Sprint(o.counts)
		o.mu.Unlock()
		if got >= n {
			if got != n || len(o.counts) != 1 {
				t.Fatalf("client errors %s; want %d %s only", all, n, cause)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client errors %s; want %d %s", all, n, cause)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Upgrades still take ReverseProxy: it is held to the same head limit and
// status range (issue 17: a 10 MB head was relayed, and status 099 became
// a 500 through a panic).
func TestReverseProxyResponseLimits(t *testing.T) {
	for _, tt := range []struct{ name, response string }{
		{"head over max_response_header_bytes", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\nContent-Length: 0\r\n\r\n"},
		{"status 099", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n"},
		{"status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backend := loopbackBackend(t, func(c net.Conn) {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.WriteString(c, tt.response)
				}
			})
			r := newRig(t, true, config.Route{}, func(c *config.Config) { c.Defaults.Retry.Attempts = config.Set(1) }, backend)
			if w, res := r.do(get("/", nil)); w.Code != 502 || res.Status != 502 {
				t.Fatalf("status %d (result %d); want 502", w.Code, res.Status)
			}
		})
	}
}
