package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// tracedBackend is a backend in the test process, registered in Consul,
// that keeps the trace id of the traceparent each request brought.
type tracedBackend struct {
	id  string
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]bool // trace ids seen
}

func startTracedBackend(t *testing.T, c *harness.Consul, id string) *tracedBackend {
	tb := &tracedBackend{id: id, got: map[string]bool{}}
	tb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if parts := strings.Split(r.Header.Get("Traceparent"), "-"); len(parts) == 4 {
			tb.mu.Lock()
			tb.got[parts[1]] = true
			tb.mu.Unlock()
		}
		w.Header().Set("X-Backend-Id", id)
		_, _ = io.WriteString(w, id+"\n")
	}))
	t.Cleanup(tb.srv.Close)
	c.Register(t, id, "web", strings.TrimPrefix(tb.srv.URL, "http://"))
	return tb
}

func (tb *tracedBackend) saw(traceID string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.got[traceID]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tracedRequest is one request of the run: the client's trace and span
// ids, and who answered.
type tracedRequest struct {
	traceID, spanID string
	client, round   int
	backend         string
	repinned        bool // its session's backend was killed: another answered
}

// Sticky traffic with a client traceparent on every request goes through
// two latch replicas (real Consul and Redis) tracing to a real Jaeger; one
// backend is killed mid-run (Consul still says it is passing, so the
// replicas find out by trying it). Read back from Jaeger's query API after
// the replicas shut down (their spans flushed then): every request's
// trace is the client's, continued through latch to the backend (the
// backend got a traceparent of the same trace id, and latch's server span
// is the client's span's child); the trace of a re-pinned request shows
// the failed attempt on the dead backend and the retry that answered. Over
// both OTLP protocols.
func TestTracesToJaeger(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) { tracesToJaeger(t, protocol) })
	}
}

func tracesToJaeger(t *testing.T, protocol string) {
	jaeger := harness.StartJaeger(t)
	consul, redis := harness.StartConsul(t), harness.StartRedis(t)
	backends := map[string]*tracedBackend{}
	for _, id := range []string{"a", "b", "c"} {
		backends[id] = startTracedBackend(t, consul, id)
	}
	service := "latch-it-" + randomHex(4)
	cfg := harness.LatchConfig(consul.HTTPAddr, redis.URL, "web")
	cfg.Tracing = config.Tracing{Endpoint: jaeger.OTLPHTTP, Protocol: protocol, ServiceName: service}
	if protocol == "grpc" {
		cfg.Tracing.Endpoint = jaeger.OTLPGRPC
	}
	replicas := []*harness.Latch{harness.StartLatch(t, cfg), harness.StartLatch(t, cfg)}
	for _, l := range replicas {
		seenAll(t, l.URL+"/", 15*time.Second, "a", "b", "c")
	}

	const clients, rounds, killAt = 30, 6, 3
	jars := make([]*http.Client, clients)
	for i := range jars {
		jars[i] = harness.Client()
	}
	var sent []*tracedRequest
	last := make([]string, clients)
	for round := range rounds {
		if round == killAt {
			backends["a"].srv.Close() // a refuses connections from now on
		}
		for i, client := range jars {
			r := &tracedRequest{traceID: randomHex(16), spanID: randomHex(8), client: i, round: round}
			req, _ := http.NewRequest(http.MethodGet, replicas[(i+round)%2].URL+"/", nil)
			req.Header.Set("Traceparent", "00-"+r.traceID+"-"+r.spanID+"-01")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("client %d round %d: %v", i, round, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("client %d round %d: status %d", i, round, resp.StatusCode)
			}
			r.backend = resp.Header.Get("X-Backend-Id")
			if round > 0 && r.backend != last[i] {
				if last[i] != "a" || round < killAt {
					t.Fatalf("client %d round %d: moved from %s to %s; sessions move only off the killed backend", i, round, last[i], r.backend)
				}
				r.repinned = true
			}
			last[i] = r.backend
			sent = append(sent, r)
		}
	}
	repinned := 0
	for _, r := range sent {
		if !backends[r.backend].saw(r.traceID) {
			t.Fatalf("backend %s got no traceparent of the client's trace %s", r.backend, r.traceID)
		}
		if r.repinned {
			repinned++
		}
	}
	if repinned == 0 {
		t.Fatal("no session was on the killed backend: the run exercised no re-pin")
	}
	for _, l := range replicas {
		l.Stop(t) // flushes the spans not yet exported
	}

	byID := map[string]harness.JaegerTrace{}
	harness.WaitFor(t, 30*time.Second, "every request's trace in jaeger", func() bool {
		for _, tr := range jaeger.Traces(t, service, 10*len(sent)) {
			byID[tr.TraceID] = tr
		}
		for _, r := range sent {
			if _, ok := byID[r.traceID]; !ok {
				return false
			}
		}
		return true
	})
	shown := 0
	for _, r := range sent {
		tr := byID[r.traceID]
		var server *harness.JaegerSpan
		var attempts []harness.JaegerSpan
		for i, s := range tr.Spans {
			switch {
			case s.Tag("span.kind") == "server":
				server = &tr.Spans[i]
			case s.OperationName == "attempt":
				attempts = append(attempts, s)
			}
		}
		if server == nil || len(attempts) == 0 {
			t.Fatalf("trace %s: %d spans, no server span or no attempt", r.traceID, len(tr.Spans))
		}
		child := slices.ContainsFunc(server.References, func(ref struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		}) bool {
			return ref.RefType == "CHILD_OF" && ref.SpanID == r.spanID
		})
		if !child {
			t.Fatalf("trace %s: latch's server span is not the client's span's child: %+v", r.traceID, server.References)
		}
		if got := server.Tag("latch.backend"); got != r.backend {
			t.Fatalf("trace %s: server span's backend %q; the client got %q", r.traceID, got, r.backend)
		}
		if !r.repinned {
			continue
		}
		if got := server.Tag("latch.session"); got != "repinned" {
			t.Errorf("trace %s of a re-pinned request: session %q", r.traceID, got)
		}
		// Once a replica's breaker for a opens, it re-pins without trying a:
		// only the requests before that show the failed attempt.
		slices.SortFunc(attempts, func(x, y harness.JaegerSpan) int { return int(x.StartTime - y.StartTime) })
		if len(attempts) < 2 {
			continue
		}
		failed, retry := attempts[0], attempts[len(attempts)-1]
		if failed.Tag("latch.backend") != "a" || failed.Tag("latch.outcome") != "failure" || failed.Tag("latch.retried") != "true" ||
			retry.Tag("latch.backend") != r.backend || retry.Tag("latch.retry") != "true" || retry.Tag("latch.outcome") != "success" {
			t.Errorf("trace %s of a re-pinned request: attempts %s", r.traceID, describeAttempts(attempts))
		}
		if !slices.Contains(server.Events(), "re-pinned") {
			t.Errorf("trace %s of a re-pinned request: server span events %v; want re-pinned", r.traceID, server.Events())
		}
		shown++
	}
	if shown == 0 {
		t.Fatalf("none of the %d re-pinned requests' traces shows the failed attempt and the retry", repinned)
	}
	t.Logf("%d requests traced through 2 replicas; %d re-pinned, %d of them with the failed attempt and the retry in Jaeger", len(sent), repinned, shown)
}

func describeAttempts(spans []harness.JaegerSpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "[%s outcome=%s retry=%s retried=%s] ", s.Tag("latch.backend"), s.Tag("latch.outcome"), s.Tag("latch.retry"), s.Tag("latch.retried"))
	}
	return b.String()
}

// The latch binary, configured by the standard OTEL_* variables alone,
// sends its spans to Jaeger, and flushes the batch when SIGTERM stops it:
// the batch's timer is set far out (OTEL_BSP_SCHEDULE_DELAY, read by the
// SDK), so only the flush at shutdown can have delivered the request's
// trace by the time the process has exited.
func TestTracesFlushedOnSIGTERM(t *testing.T) {
	jaeger := harness.StartJaeger(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer backend.Close()
	service := "latch-sigterm-" + randomHex(4)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := harness.StartProcessEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + jaeger.OTLPHTTP, "OTEL_SERVICE_NAME=" + service,
		"OTEL_TRACES_SAMPLER=always_on", "OTEL_BSP_SCHEDULE_DELAY=600000",
	}, harness.Binaries(t)+"/latch", "-listen", addr, "-admin-listen", "off",
		"-service", "web", "-backends", strings.TrimPrefix(backend.URL, "http://"))
	traceID := randomHex(16)
	harness.WaitFor(t, 15*time.Second, "latch answering", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("Traceparent", "00-"+traceID+"-"+randomHex(8)+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	p.Stop() // SIGTERM, and wait for the exit
	found := false
	harness.WaitFor(t, 15*time.Second, "the trace in jaeger", func() bool {
		for _, tr := range jaeger.Traces(t, service, 10) {
			found = found || tr.TraceID == traceID
		}
		return found
	})
}
