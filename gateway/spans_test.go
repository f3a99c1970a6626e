package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/tracing"
)

// traceBackend answers 200 and keeps the traceparent of each request.
type traceBackend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newTraceBackend(t *testing.T) *traceBackend {
	tb := &traceBackend{}
	tb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.mu.Lock()
		tb.seen = append(tb.seen, r.Header.Get("Traceparent")+"|"+r.Header.Get("Tracestate"))
		tb.mu.Unlock()
		w.Header().Set("Content-Length", "3")
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(tb.srv.Close)
	return tb
}

func (tb *traceBackend) last(t *testing.T) (parent, state string) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.seen) == 0 {
		t.Fatal("the backend got no request")
	}
	parent, state, _ = strings.Cut(tb.seen[len(tb.seen)-1], "|")
	return parent, state
}

// startTracedGateway runs a gateway over backends that records its spans
// in memory (nil rec: tracing off).
func startTracedGateway(t *testing.T, rec *tracetest.SpanRecorder, mutate func(*config.Config), list ...discovery.Backend) *testGateway {
	var with []func(*Deps)
	if rec != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
		with = append(with, func(d *Deps) { d.Tracing = tracing.FromProvider(tp) })
	}
	return startGatewayFull(t, mutate, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), list, with...)
}

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00-" + clientTrace + "-00f067aa0ba902b7-01"
)

func tracedGet(t *testing.T, tg *testGateway, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", tg.url+path, nil)
	req.Header.Set("Traceparent", clientParent)
	req.Header.Set("Tracestate", "vendor=x")
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

// The client's trace continues through latch to the backend: the backend's
// traceparent has the client's trace id and the attempt span's id, on both
// forwarding paths; the server span is the client's span's child, the
// attempt span the server span's, and they carry the route, session and
// backend. Behind trusted_proxies an untrusted client's trace is not
// joined: a new trace, linked to it. With tracing off the client's fields
// pass unchanged.
func TestTraceContextToBackend(t *testing.T) {
	for _, path := range []string{"/", "/?fast=no;path"} {
		for _, tt := range []struct {
			name    string
			off     bool
			trusted string // trusted_proxies
			joined  bool   // the client's trace continues
		}{
			{name: "no trusted proxies", joined: true},
			{name: "trusted peer", trusted: "127.0.0.0/8", joined: true},
			{name: "untrusted peer", trusted: "10.0.0.0/8"},
			{name: "off", off: true},
		} {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				be := newTraceBackend(t)
				var rec *tracetest.SpanRecorder
				if !tt.off {
					rec = tracetest.NewSpanRecorder()
				}
				tg := startTracedGateway(t, rec, func(c *config.Config) {
					if tt.trusted != "" {
						c.TrustedProxies = config.List{tt.trusted}
					}
				}, discovery.Backend{ID: "b1", Service: "web", Addr: strings.TrimPrefix(be.srv.URL, "http://"), Weight: 1, Health: discovery.Passing})
				tracedGet(t, tg, path)
				parent, state := be.last(t)
				if tt.off {
					if parent != clientParent || state != "vendor=x" {
						t.Fatalf("backend got %q %q; want the client's fields unchanged", parent, state)
					}
					return
				}
				var server, attempt sdktrace.ReadOnlySpan
				waitUntil(t, "the request's spans", func() bool {
					server, attempt = nil, nil
					for _, s := range rec.Ended() {
						switch s.SpanKind() {
						case trace.SpanKindServer:
							server = s
						case trace.SpanKindClient:
							if strings.HasPrefix(s.Name(), "attempt") {
								attempt = s
							}
						}
					}
					return server != nil && attempt != nil
				})
				want := "00-" + attempt.SpanContext().TraceID().String() + "-" + attempt.SpanContext().SpanID().String() + "-01"
				if parent != want {
					t.Fatalf("backend got traceparent %q; want the attempt span's %q", parent, want)
				}
				if attempt.Parent().SpanID() != server.SpanContext().SpanID() {
					t.Fatal("the attempt span is not the server span's child")
				}
				gotTrace := server.SpanContext().TraceID().String()
				if tt.joined {
					if gotTrace != clientTrace || server.Parent().SpanID().String() != "00f067aa0ba902b7" {
						t.Fatalf("server span in trace %s, parent %s; want the client's", gotTrace, server.Parent().SpanID())
					}
					if state != "vendor=x" {
						t.Fatalf("tracestate %q; want the client's", state)
					}
				} else {
					if gotTrace == clientTrace || server.Parent().IsValid() {
						t.Fatal("an untrusted client's trace was joined")
					}
					if l := server.Links(); len(l) != 1 || l[0].SpanContext.TraceID().String() != clientTrace {
						t.Fatalf("links %v; want one to the client's span", l)
					}
				}
				attrs := map[string]string{}
				for _, kv := range server.Attributes() {
					attrs[string(kv.Key)] = kv.Value.Emit()
				}
				for k, v := range map[string]string{"http.route": "web", "latch.session": "new", "latch.backend": "b1",
					"http.response.status_code": "200", "http.response.body.size": "3"} {
					if attrs[k] != v {
						t.Errorf("server span %s = %q; want %q (all: %v)", k, attrs[k], v, attrs)
					}
				}
			})
		}
	}
}

// A session whose backend went away is re-pinned, and its trace shows it:
// the failed attempt on the old backend (a failure, retried), the attempt
// on the new one (a retry), a re-pinned event and session kind on the
// server span, and spans for the session store calls. The request's
// duration carries its trace id as an exemplar.
func TestTraceOfRepinnedRequest(t *testing.T) {
	for _, path := range []string{"/", "/?fast=no;path"} {
		t.Run(path, func(t *testing.T) {
			a, b := newTraceBackend(t), newTraceBackend(t)
			rec := tracetest.NewSpanRecorder()
			backend := func(id string, tb *traceBackend) discovery.Backend {
				return discovery.Backend{ID: id, Service: "web", Addr: strings.TrimPrefix(tb.srv.URL, "http://"), Weight: 1, Health: discovery.Passing}
			}
			tg := startTracedGateway(t, rec, nil, backend("a", a), backend("b", b))
			var cookie *http.Cookie
			for cookie == nil { // a session on a
				resp := tracedGet(t, tg, path)
				if len(resp.Cookies()) > 0 && resp.Header.Get("Content-Length") == "3" {
					a.mu.Lock()
					onA := len(a.seen) > 0
					a.seen = nil
					a.mu.Unlock()
					if onA {
						cookie = resp.Cookies()[0]
					}
				}
			}
			a.srv.Close() // refuses connections from now on; Consul does not know yet
			req, _ := http.NewRequest("GET", tg.url+path, nil)
			const repinTrace = "5bf92f3577b34da6a3ce929d0e0e4737"
			req.Header.Set("Traceparent", "00-"+repinTrace+"-00f067aa0ba902b7-01")
			req.AddCookie(cookie)
			resp, err := tg.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d; want 200 from b", resp.StatusCode)
			}
			var server sdktrace.ReadOnlySpan
			var attempts []sdktrace.ReadOnlySpan
			names := map[string]bool{}
			waitUntil(t, "the re-pinned request's spans", func() bool {
				server, attempts = nil, nil
				for _, s := range rec.Ended() {
					if s.SpanContext().TraceID().String() != repinTrace {
						continue
					}
					names[s.Name()] = true
					switch {
					case s.SpanKind() == trace.SpanKindServer:
						server = s
					case strings.HasPrefix(s.Name(), "attempt"):
						attempts = append(attempts, s)
					}
				}
				return server != nil && len(attempts) == 2
			})
			attr := func(s sdktrace.ReadOnlySpan, k string) string {
				for _, kv := range s.Attributes() {
					if string(kv.Key) == k {
						return kv.Value.Emit()
					}
				}
				return ""
			}
			first, second := attempts[0], attempts[1]
			if first.StartTime().After(second.StartTime()) {
				first, second = second, first
			}
			for _, c := range []struct {
				span       sdktrace.ReadOnlySpan
				key, value string
			}{
				{first, "latch.backend", "a"}, {first, "latch.outcome", "failure"}, {first, "latch.retried", "true"}, {first, "latch.retry", "false"},
				{second, "latch.backend", "b"}, {second, "latch.outcome", "success"}, {second, "latch.retried", "false"}, {second, "latch.retry", "true"},
				{server, "latch.session", "repinned"}, {server, "latch.backend", "b"},
			} {
				if got := attr(c.span, c.key); got != c.value {
					t.Errorf("%s: %s = %q; want %q", c.span.Name(), c.key, got, c.value)
				}
			}
			repinned := false
			for _, e := range server.Events() {
				repinned = repinned || e.Name == "re-pinned"
			}
			if !repinned {
				t.Errorf("server span events %v; want a re-pinned event", server.Events())
			}
			for _, n := range []string{"session.resolve", "session.repin", "session.commit"} {
				if !names[n] {
					t.Errorf("no %s span among %v", n, names)
				}
			}
			// The exemplar: OpenMetrics exposition of the duration histogram.
			mreq, _ := http.NewRequest("GET", tg.metrics+"/metrics", nil)
			mreq.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
			mresp, err := tg.client.Do(mreq)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(mresp.Body)
			mresp.Body.Close()
			if !strings.Contains(string(body), `trace_id="`+repinTrace+`"`) {
				t.Fatalf("no exemplar with trace id %s in /metrics", repinTrace)
			}
		})
	}
}

// BenchmarkStickyTraced is BenchmarkSticky (access log off) with tracing
// off, on at 1% sampling (parentbased_traceidratio 0.01, the client sends
// no traceparent) and on for every request, spans exported in batches to
// an exporter that drops them: the CPU and allocations a request pays for
// its spans (ns/op against "off" of the same run).
//
//	go test -run '^$' -bench BenchmarkStickyTraced -benchmem ./gateway/
func BenchmarkStickyTraced(b *testing.B) {
	for _, tt := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"sampled=1%", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{"sampled=100%", sdktrace.AlwaysSample()},
	} {
		b.Run(tt.name, func(b *testing.B) {
			var with []func(*Deps)
			if tt.sampler != nil {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tt.sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				with = append(with, func(d *Deps) { d.Tracing = tracing.FromProvider(tp) })
			}
			serve := stickyRig(b, "", with...)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				serve()
			}
			// The process's CPU a request (latch's handler, the loopback
			// backend and the span batcher), so off and 1% compare in one run.
			b.ReportMetric(float64(cpuTime()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/req")
		})
	}
}
