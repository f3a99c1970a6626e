package forward

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/policy"
)

// With a tracer, a backend whose breaker refuses the request is an event on
// the request's span (no attempt span: nothing was sent), and the attempt
// that answered is a span under the request's, whose context the backend
// got as traceparent; on both paths.
func TestTracedBreakerRefusal(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			r, probe := halfOpenB0(t, p.slow)
			defer probe.Finish(policy.Ignored, 0)
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer func() { _ = tp.Shutdown(t.Context()) }()
			r.f.SetTracer(tp.Tracer("test"))
			rec.Reset()
			ctx, server := tp.Tracer("test").Start(t.Context(), "request", trace.WithSpanKind(trace.SpanKindServer))
			req := get("/", nil)
			w, res := r.do(req.WithContext(ctx))
			server.End()
			if w.Code != 200 || res.Backend == nil || res.Backend.ID != "b1" {
				t.Fatalf("status %d from %v; want 200 from b1", w.Code, res.Backend)
			}
			var attempts []sdktrace.ReadOnlySpan
			var request sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				switch s.Name() {
				case "attempt":
					attempts = append(attempts, s)
				case "request":
					request = s
				}
			}
			if len(attempts) != 1 || attempts[0].Parent().SpanID() != request.SpanContext().SpanID() {
				t.Fatalf("%d attempt spans; want one, under the request's span", len(attempts))
			}
			refusedB0 := false
			for _, e := range request.Events() {
				for _, kv := range e.Attributes {
					refusedB0 = refusedB0 || e.Name == "breaker refused" && kv.Key == "latch.backend" && kv.Value.AsString() == "b0"
				}
			}
			if !refusedB0 {
				t.Fatalf("request span events %v; want b0's breaker refusal", request.Events())
			}
			sc := attempts[0].SpanContext()
			if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; !strings.Contains(w.Body.String(), want) {
				t.Fatalf("backend answered %q; want it to have got traceparent %s", w.Body.String(), want)
			}
		})
	}
}
