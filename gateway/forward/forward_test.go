package forward

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle client connections' goroutines briefly.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// Every proxy behaviour, over both paths: a rule cannot drift between them.
func TestPipeline(t *testing.T) {
	hostile := map[string]string{
		"Connection": "X-Hop, X-Request-Id", "X-Hop": "1", "Keep-Alive": "timeout=5", "Proxy-Authorization": "x",
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
		"Forwarded": "for=6.6.6.6", "Te": "trailers", "X-Request-Id": "rid-1", "X-App": "kept",
	}
	type check func(t *testing.T, r *rig, w *httptest.ResponseRecorder, res Result)
	body := func(want ...string) check {
		return func(t *testing.T, _ *rig, w *httptest.ResponseRecorder, _ Result) {
			for _, s := range want {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("backend saw:\n%s\nwant %q", w.Body, s)
				}
			}
		}
	}
	absent := func(bad ...string) check {
		return func(t *testing.T, _ *rig, w *httptest.ResponseRecorder, _ Result) {
			for _, s := range bad {
				if strings.Contains(w.Body.String(), s) {
					t.Errorf("backend saw:\n%s\nwant no %q", w.Body, s)
				}
			}
		}
	}
	status := func(code int, backend string) check {
		return func(t *testing.T, r *rig, w *httptest.ResponseRecorder, res Result) {
			if w.Code != code || res.Status != code {
				t.Errorf("status %d (result %d); want %d", w.Code, res.Status, code)
			}
			if backend != "" && (res.Backend == nil || res.Backend.ID != backend) {
				t.Errorf("answered by %v; want %s", res.Backend, backend)
			}
		}
	}
	tests := []struct {
		name   string
		route  config.Route
		mutate func(*config.Config)
		// backends: "echo" or "closed"
		backends []string
		req      *http.Request
		checks   []check
	}{
		{name: "untrusted client's head", backends: []string{"echo"}, req: get("/p?q=1", hostile), checks: []check{
			status(200, "b0"),
			body("b0 GET /p?q=1\n", "Host: shop.example.com\n", "X-App: kept", "X-Request-Id: rid-1", "Te: trailers",
				"X-Forwarded-For: 127.0.0.1\n", "X-Forwarded-Host: shop.example.com\n", "X-Forwarded-Proto: http\n"),
			absent("X-Hop", "Keep-Alive", "Proxy-Authorization", "Forwarded: ", "6.6.6.6", "evil"),
		}},
		{name: "trusted proxy's head", mutate: func(c *config.Config) { c.TrustedProxies = config.List{"127.0.0.0/8"} },
			backends: []string{"echo"}, req: get("/p", hostile), checks: []check{
				body("X-Forwarded-For: 6.6.6.6, 127.0.0.1\n", "X-Forwarded-Host: evil.example\n", "X-Forwarded-Proto: https\n"),
				absent("Forwarded: "),
			}},
		{name: "prefix stripped", route: config.Route{PathPrefix: "/api", StripPrefix: true},
			backends: []string{"echo"}, req: get("/api/x/y?z=1", nil), checks: []check{body("b0 GET /x/y?z=1\n")}},
		{name: "prefix kept", route: config.Route{PathPrefix: "/api"},
			backends: []string{"echo"}, req: get("/api/x", nil), checks: []check{body("b0 GET /api/x\n")}},
		{name: "session committed once", backends: []string{"echo"}, req: get("/", nil), checks: []check{
			func(t *testing.T, r *rig, w *httptest.ResponseRecorder, _ Result) {
				if r.commits.Load() != 1 || w.Header().Get("X-Committed") != "b0" {
					t.Errorf("commits %d, header %q; want 1 by b0", r.commits.Load(), w.Header().Get("X-Committed"))
				}
			}}},
		{name: "failure status relayed and counted", mutate: func(c *config.Config) {
			c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
		}, backends: []string{"echo"}, req: get("/status/503", nil), checks: []check{
			status(503, "b0"),
			func(t *testing.T, r *rig, _ *httptest.ResponseRecorder, _ Result) {
				if s := r.set.Backends[0].Breaker(); s != policy.Open {
					t.Errorf("breaker %v; want open after one failure status", s)
				}
			}}},
		{name: "retry on status", mutate: func(c *config.Config) {
			c.Defaults.Retry.OnStatus = config.Set([]int{503})
			c.Defaults.Retry.Attempts = config.Set(2)
		},
			backends: []string{"echo", "echo"}, req: get("/status/503", nil), checks: []check{
				status(503, "b1"), // b0's 503 dropped, b1's relayed: the last attempt's answer
				func(t *testing.T, r *rig, _ *httptest.ResponseRecorder, _ Result) {
					if r.commits.Load() != 1 {
						t.Errorf("commits %d; want 1 (the answer relayed)", r.commits.Load())
					}
				}}},
		{name: "dial error retried", backends: []string{"closed", "echo"}, req: get("/", nil),
			checks: []check{status(200, "b1")}},
		{name: "dial error without retry", mutate: func(c *config.Config) { c.Defaults.Retry.Attempts = config.Set(1) },
			backends: []string{"closed", "echo"}, req: get("/", nil), checks: []check{status(502, "b0")}},
		{name: "no backend", backends: nil, req: get("/", nil), checks: []check{status(503, "")}},
		{name: "reset before the answer: resent to another backend", backends: []string{"reset", "echo"},
			req: get("/", nil), checks: []check{status(200, "b1")}},
		{name: "reset before the answer: resent once only", backends: []string{"reset", "reset", "echo"},
			req: get("/", nil), checks: []check{status(502, "b1")}},
		{name: "reset before the answer: a POST is not resent", backends: []string{"reset", "echo"},
			req: post("/", "x=1"), checks: []check{status(502, "b0")}},
		{name: "reset without retry", mutate: func(c *config.Config) { c.Defaults.Retry.Attempts = config.Set(1) },
			backends: []string{"reset", "echo"}, req: get("/", nil), checks: []check{status(502, "b0")}},
		{name: "header timeout", mutate: func(c *config.Config) {
			c.Transport.ResponseHeaderTimeout = config.Set(50 * time.Millisecond)
		}, backends: []string{"hang"}, req: get("/", nil), checks: []check{status(504, "b0")}},
	}
	for _, p := range paths {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				var addrs []string
				for i, kind := range tt.backends {
					switch kind {
					case "echo":
						addrs = append(addrs, strings.TrimPrefix(echo(t, fmt.Sprintf("b%d", i)).URL, "http://"))
					case "closed":
						addrs = append(addrs, closedAddr(t))
					case "hang":
						addrs = append(addrs, hang(t))
					case "reset":
						addrs = append(addrs, reset(t))
					}
				}
				r := newRig(t, p.slow, tt.route, tt.mutate, addrs...)
				w, res := r.do(tt.req)
				for _, c := range tt.checks {
					c(t, r, w, res)
				}
			})
		}
	}
}

func TestBreakerRefusalCostsNoAttempt(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			r, probe := halfOpenB0(t, p.slow)
			defer probe.Finish(policy.Ignored, 0)
			w, res := r.do(get("/", nil))
			if w.Code != 200 || res.Backend == nil || res.Backend.ID != "b1" {
				t.Fatalf("status %d from %v; want 200 from b1", w.Code, res.Backend)
			}
		})
	}
}

// Issue 13: the latency statistics ran from Acquire to Done, so a long
// body made a fast backend look slow; they get the time to the head.
func TestLatencyIsTimeToHeaders(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			a := echo(t, "b0")
			r := newRig(t, p.slow, config.Route{}, nil, strings.TrimPrefix(a.URL, "http://"))
			w, _ := r.do(get("/slow", nil))
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			if l := r.set.Backends[0].Latency(); l <= 0 || l > 150*time.Millisecond {
				t.Fatalf("latency %v; want the time to the head, not the 300ms body", l)
			}
		})
	}
}

// Issue 13: when ReverseProxy cut a response mid-body it panicked past the
// ticket: the in-flight count leaked and a half-open breaker's probe was
// never returned.
func TestCutResponseFinishesTicket(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the backend dies mid-body
	}))
	defer srv.Close()
	r := newRig(t, true, config.Route{}, nil, strings.TrimPrefix(srv.URL, "http://"))
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	req = req.WithContext(context.WithValue(req.Context(), http.ServerContextKey, &http.Server{}))
	if _, res := r.do(req); !res.Abort {
		t.Fatalf("result %+v; want the cut response aborted", res)
	}
	if n := r.set.Backends[0].InFlight(); n != 0 {
		t.Fatalf("in flight %d after a cut response; want 0", n)
	}
}

// slowBody is a request body whose first Read waits a little, so that a
// backend can answer before the body is touched.
type slowBody struct {
	n     int
	first bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.first {
		b.first = true
		time.Sleep(5 * time.Millisecond)
	}
	if b.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), b.n, 4096)
	for i := range p[:k] {
		p[i] = 'x'
	}
	b.n -= k
	return k, nil
}

// Issue 13: the replayed body broke the RoundTripper contract (Close did
// nothing, "read" was a plain bool): a retried PUT raced the first
// attempt's transport, which could still read it, and the second backend
// got part of the body. Every answer from the second backend must carry
// the whole body (run with -race, as make test does).
func TestRetriedBodyIsWhole(t *testing.T) {
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503) // before reading the body
	}))
	defer first.Close()
	second := echo(t, "b1")
	r := newRig(t, true, config.Route{}, func(c *config.Config) {
		c.Defaults.Retry.OnStatus = config.Set([]int{503})
		c.Defaults.Retry.Attempts = config.Set(2)
	}, strings.TrimPrefix(first.URL, "http://"), strings.TrimPrefix(second.URL, "http://"))
	const size = 256 << 10
	retried := 0
	for range 40 {
		req := httptest.NewRequest(http.MethodPut, "/", io.NopCloser(&slowBody{n: size}))
		req.ContentLength = size
		w, res := r.do(req)
		switch {
		case res.Backend != nil && res.Backend.ID == "b1":
			retried++
			if !strings.Contains(w.Body.String(), fmt.Sprintf("body=%d\n", size)) {
				t.Fatalf("the second backend got part of the body:\n%s", w.Body)
			}
		case w.Code != 503:
			t.Fatalf("status %d from %v; want b1's answer or b0's 503", w.Code, res.Backend)
		}
	}
	t.Logf("%d of 40 retried", retried)
}

// A body's first read and the decision to replay it race on one word:
// exactly one wins.
func TestReplayBodyClaim(t *testing.T) {
	b := &replayBody{rc: io.NopCloser(strings.NewReader("abc"))}
	old := &attemptBody{b: b, gen: 0}
	if !b.detach(0) {
		t.Fatal("an untouched body was not replayable")
	}
	if n, err := old.Read(make([]byte, 8)); n != 0 || err == nil {
		t.Fatalf("the detached attempt read %d bytes (err %v); want none", n, err)
	}
	cur := &attemptBody{b: b, gen: 1}
	if n, _ := cur.Read(make([]byte, 8)); n != 3 {
		t.Fatalf("the next attempt read %d bytes; want 3", n)
	}
	if b.detach(1) {
		t.Fatal("a read body was replayable")
	}
}

// Issue 13: a warning was logged on every request during an outage; one a
// second gets through, with the count of those held back.
func TestOutageWarningsRateLimited(t *testing.T) {
	r := newRig(t, false, config.Route{}, func(c *config.Config) { c.Defaults.Retry.Attempts = config.Set(1) }, closedAddr(t))
	var logs strings.Builder
	var mu sync.Mutex
	r.f.log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	start := time.Now()
	for range 100 {
		if w, _ := r.do(get("/", nil)); w.Code != 502 {
			t.Fatalf("status %d; want 502", w.Code)
		}
	}
	mu.Lock()
	n := strings.Count(logs.String(), "upstream failed")
	mu.Unlock()
	if limit := 1 + int(time.Since(start)/logEvery); n < 1 || n > limit {
		t.Fatalf("%d warnings for 100 failed requests; want 1 to %d", n, limit)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// halfOpenB0 is a rig over backends b0 and b1 (one attempt per request)
// whose b0 has answered 502, opened its breaker and half-opened it, with
// the one probe ticket held by the caller: b0 refuses every request until
// the ticket is done.
func halfOpenB0(t *testing.T, slow bool) (*rig, policy.Ticket) {
	t.Helper()
	a, b := echo(t, "b0"), echo(t, "b1")
	r := newRig(t, slow, config.Route{}, func(c *config.Config) {
		c.Defaults.Retry.Attempts = config.Set(1)
		c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1)
		c.Defaults.Breaker.OpenTimeout = config.Set(20 * time.Millisecond)
	}, strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://"))
	if w, _ := r.do(get("/status/502", nil)); w.Code != 502 {
		t.Fatalf("status %d; want b0's 502", w.Code)
	}
	b0 := r.set.Backends[0]
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if probe, err := b0.Acquire(); err == nil {
			return r, probe // half-open, and the caller holds its only probe
		}
		if time.Now().After(deadline) {
			t.Fatal("breaker never let a probe through")
		}
	}
}
