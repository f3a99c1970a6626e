package forward

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/policy"
)

// The pipeline's spans: one client span per attempt, a child of the
// request's server span (the gateway's, in the request context), and an
// event on that server span for each backend a breaker refused. With no
// tracer (tracing off) none of this runs: Serve and attempt test
// f.tracer first, so the request path builds nothing.

// SetTracer turns the pipeline's spans on (nil: off, the default). The
// attempt's span context goes to the backend as traceparent and
// tracestate in place of the client's. Call it before serving.
func (f *Forwarder) SetTracer(t trace.Tracer) { f.tracer = t }

// TrustedPeer reports whether r came from one of the trusted proxies
// (server.trusted_proxies), whose forwarding fields latch believes.
func (f *Forwarder) TrustedPeer(r *http.Request) bool { return f.trustedPeer(r) }

// startAttempt starts x's attempt span on x.backend, the n-th attempt.
func (f *Forwarder) startAttempt(ctx context.Context, x *exchange, n int) {
	b := x.backend
	_, x.span = f.tracer.Start(ctx, "attempt", trace.WithSpanKind(trace.SpanKindClient))
	if x.span.IsRecording() { // a request not sampled builds no attributes
		x.span.SetAttributes(
			attribute.String("latch.backend", b.ID),
			attribute.String("server.address", b.Addr),
			attribute.Int("latch.attempt", n),
			attribute.Bool("latch.retry", n > 1),
			attribute.String("latch.breaker", b.Breaker().String()),
		)
	}
	x.traceparent, x.tracestate = traceparent(x.span.SpanContext())
}

// endAttempt records how x's attempt ended (its outcome class, whether the
// loop goes on to another backend) and ends its span.
func (x *exchange) endAttempt() {
	s := x.span
	x.span, x.traceparent, x.tracestate = nil, "", ""
	if s.IsRecording() {
		retried := x.retryable && x.status == 0 && x.canRetry
		s.SetAttributes(
			attribute.String("latch.outcome", x.outcome.String()),
			attribute.Bool("latch.retried", retried),
			attribute.String("latch.breaker_after", x.backend.Breaker().String()),
		)
		if x.status != 0 {
			s.SetAttributes(attribute.Int("http.response.status_code", x.status))
		}
		if x.outcome == policy.Failure {
			msg := "backend failed"
			if x.err != nil {
				msg = x.err.Error()
			}
			s.SetStatus(codes.Error, msg)
		}
	}
	s.End()
}

// traceRefusal records on the request's span that b's breaker refused it.
func traceRefusal(ctx context.Context, b *policy.Backend, err error) {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		s.AddEvent("breaker refused", trace.WithAttributes(
			attribute.String("latch.backend", b.ID),
			attribute.String("latch.breaker", b.Breaker().String()),
			attribute.String("error", err.Error()),
		))
	}
}

// traceparent renders sc as W3C traceparent and tracestate values.
func traceparent(sc trace.SpanContext) (parent, state string) {
	var b [55]byte
	out := append(b[:0], "00-"...)
	tid, sid := sc.TraceID(), sc.SpanID()
	out = appendHex(out, tid[:])
	out = append(out, '-')
	out = appendHex(out, sid[:])
	out = append(out, '-')
	out = appendHex(out, []byte{byte(sc.TraceFlags())})
	return string(out), sc.TraceState().String()
}

func appendHex(dst, src []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range src {
		dst = append(dst, digits[c>>4], digits[c&0xf])
	}
	return dst
}
