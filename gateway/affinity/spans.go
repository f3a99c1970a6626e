package affinity

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/policy"
)

// The session store's spans (tracing on only): a span per store call on
// the request path, resolve before forwarding, re-pin between passes,
// commit after, made here around the session layer's calls so that
// session knows nothing of OpenTelemetry. Off, nothing is built.

// storeSpan starts a child span of ctx's for a session store call (name:
// session.resolve, session.repin, session.commit); nil when tracing is
// off or ctx's span is not recorded.
func (s *Session) storeSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if s.env.Tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return s.env.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
}

// endStoreSpan ends a store call's span with the session's kind after it.
func (s *Session) endStoreSpan(span trace.Span, b *policy.Backend) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("latch.session", s.sess.Kind.String()))
	if b != nil {
		span.SetAttributes(attribute.String("latch.backend", b.ID))
	}
	span.End()
}
