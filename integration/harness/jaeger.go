package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Jaeger is a Jaeger (v2, all-in-one, in-memory storage) collector: OTLP
// in, its query API out. `make tools` builds it (integration/tools/
// install-jaeger.sh).
type Jaeger struct {
	// OTLPHTTP is the OTLP/HTTP receiver's base URL (what
	// OTEL_EXPORTER_OTLP_ENDPOINT names); OTLPGRPC its gRPC one.
	OTLPHTTP, OTLPGRPC string
	// QueryURL is the query API's (and UI's) base URL.
	QueryURL string
	*Process
}

// jaegerConfig is all-in-one's configuration cut to what the tests use,
// every listener on loopback and a free port (its defaults listen on all
// interfaces, on fixed ports other tests and users may hold): the OTLP
// receivers, memory storage, the query API. Its own metrics are off (they
// would listen on :8888).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// StartJaeger runs Jaeger on free loopback ports and waits until its query
// API answers. It stops when the test ends.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	query, queryGRPC, otlpGRPC, otlpHTTP := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, jaegerConfig, query, queryGRPC, otlpGRPC, otlpHTTP), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{
		OTLPHTTP: "http://127.0.0.1:" + strconv.Itoa(otlpHTTP),
		OTLPGRPC: "http://127.0.0.1:" + strconv.Itoa(otlpGRPC),
		QueryURL: "http://127.0.0.1:" + strconv.Itoa(query),
	}
	j.Process = StartProcess(t, ToolBinary(t, "jaeger"), "--config", "file:"+path)
	WaitFor(t, 60*time.Second, "jaeger's query API", func() bool {
		if j.Exited() {
			t.Fatalf("jaeger exited: %s", logTail(j.Log, 20))
		}
		resp, err := http.Get(j.QueryURL + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return j
}

// JaegerSpan is a span as Jaeger's query API returns it.
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"` // µs since the epoch
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	Logs []struct {
		Fields []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"fields"`
	} `json:"logs"`
	ProcessID string `json:"processID"`
}

// Tag is the span's tag k as text ("" when absent).
func (s JaegerSpan) Tag(k string) string {
	for _, tag := range s.Tags {
		if tag.Key == k {
			return fmt.Sprint(tag.Value)
		}
	}
	return ""
}

// Events are the names of the span's events (Jaeger's logs).
func (s JaegerSpan) Events() []string {
	var out []string
	for _, l := range s.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" {
				out = append(out, fmt.Sprint(f.Value))
			}
		}
	}
	return out
}

// JaegerTrace is a trace as the query API returns it.
type JaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []JaegerSpan `json:"spans"`
}

// Traces reads up to limit traces of service from the query API.
func (j *Jaeger) Traces(t testing.TB, service string, limit int) []JaegerTrace {
	t.Helper()
	q := url.Values{"service": {service}, "limit": {strconv.Itoa(limit)}, "lookback": {"1h"}}
	resp, err := http.Get(j.QueryURL + "/api/traces?" + q.Encode())
	if err != nil {
		t.Fatalf("jaeger query: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Data []JaegerTrace `json:"data"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("jaeger query: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("jaeger query: %v", err)
	}
	return out.Data
}
