package tracing

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/goleak"

	"github.com/latchgw/latch/gateway/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Without an endpoint tracing is off: New builds nothing.
func TestOffWithoutEndpoint(t *testing.T) {
	tr, err := New(context.Background(), config.Tracing{Sampler: "always_on", ServiceName: "x"}, slog.Default())
	if tr != nil || err != nil {
		t.Fatalf("New without endpoint: %v, %v; want nil, nil", tr, err)
	}
}

// otlpSink is an OTLP/HTTP receiver: it keeps the bodies posted to
// /v1/traces (protobuf, in which names and values appear as bytes).
type otlpSink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newSink(t *testing.T) *otlpSink {
	s := &otlpSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			s.mu.Lock()
			s.bodies = append(s.bodies, body)
			s.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *otlpSink) has(b string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, body := range s.bodies {
		if bytes.Contains(body, []byte(b)) {
			return true
		}
	}
	return false
}

// Close exports the spans still waiting in the batch before it returns
// (the gateway's flush on SIGTERM), to the endpoint's /v1/traces, with the
// service name and resource attributes of the settings.
func TestCloseFlushes(t *testing.T) {
	sink := newSink(t)
	tr, err := New(context.Background(), config.Tracing{Endpoint: sink.srv.URL, ServiceName: "edge-7",
		Sampler: "always_on", ResourceAttributes: "deployment.environment=stag%20ing"}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer().Start(context.Background(), "flushed-span")
	span.End()
	if sink.has("flushed-span") {
		t.Fatal("exported before Close: the batch did not wait (the test proves nothing)")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flushed-span", "edge-7", "stag ing"} {
		if !sink.has(want) {
			t.Errorf("after Close the receiver has no %q", want)
		}
	}
}

func TestSampler(t *testing.T) {
	tests := []struct {
		name, arg, want, err string
	}{
		{"", "", "ParentBased{root:AlwaysOnSampler", ""},
		{"always_on", "", "AlwaysOnSampler", ""},
		{"always_off", "", "AlwaysOffSampler", ""},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}", ""},
		{"parentbased_traceidratio", "0.01", "ParentBased{root:TraceIDRatioBased{0.01}", ""},
		{"parentbased_traceidratio", "", "ParentBased{root:AlwaysOnSampler", ""}, // ratio 1
		{"parentbased_always_off", "", "ParentBased{root:AlwaysOffSampler", ""},
		{"traceidratio", "1.5", "", "not a ratio"},
		{"sometimes", "", "", "is not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.arg, func(t *testing.T) {
			s, err := Sampler(tt.name, tt.arg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(s.Description(), tt.want) {
				t.Fatalf("%v, %v; want %s", s, err, tt.want)
			}
		})
	}
}

func TestResourceAttributes(t *testing.T) {
	tests := []struct {
		in   string
		want []attribute.KeyValue
		err  bool
	}{
		{"", nil, false},
		{"a=1", []attribute.KeyValue{attribute.String("a", "1")}, false},
		{" a = 1 ,b=x%2Cy,", []attribute.KeyValue{attribute.String("a", "1"), attribute.String("b", "x,y")}, false},
		{"a", nil, true},
		{"=1", nil, true},
		{"a=%zz", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ResourceAttributes(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("error %v; want error %v", err, tt.err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%v; want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("%v; want %v", got, tt.want)
				}
			}
		})
	}
}

// A collector that does not answer is a warning in latch's log, not a
// line of the SDK's own on stderr.
func TestExportErrorsAreLogged(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	tr, err := New(context.Background(), config.Tracing{Endpoint: dead.URL, Sampler: "always_on"}, log)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer().Start(context.Background(), "lost")
	span.End()
	_ = tr.Close() // the flush fails
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "tracing: exporting spans failed") {
		t.Fatalf("log %q; want the export failure", buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
