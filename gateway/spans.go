package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
)

// The gateway's spans (tracing on only; the rules of trace context and
// export live in the tracing package): the request's server span, which
// the pipeline's attempt spans hang under, and a span per session store
// call on the request path (resolve before forwarding, re-pin when the
// policy picks, commit after), made here around the session layer's calls
// so that session knows nothing of OpenTelemetry. Every caller tests
// g.tracing first: off, nothing is built.

// startRequestSpan starts r's server span on route rt and returns r with
// it in its context. The client's trace is joined unless trusted_proxies
// is set and r's peer is not among them.
func (g *Gateway) startRequestSpan(r *http.Request, rt *route) (*http.Request, trace.Span) {
	ctx, span := g.tracing.StartRequest(r, rt.name, len(g.trusted) == 0 || g.fwd.TrustedPeer(r))
	return r.WithContext(ctx), span
}

// endRequestSpan records how the request ended on its span and ends it.
func endRequestSpan(span trace.Span, w http.ResponseWriter, r *http.Request, st *reqState, res forward.Result) {
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.Int("http.response.status_code", res.Status),
			attribute.String("latch.service", st.rt.service.name),
			attribute.String("latch.session", st.sess.Kind.String()),
		}
		if res.Backend != nil {
			attrs = append(attrs, attribute.String("latch.backend", res.Backend.ID))
		}
		if r.ContentLength > 0 {
			attrs = append(attrs, attribute.Int64("http.request.body.size", r.ContentLength))
		}
		// The response's size as the backend declared it (a chunked
		// response has none).
		if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil {
			attrs = append(attrs, attribute.Int64("http.response.body.size", n))
		}
		span.SetAttributes(attrs...)
		if res.Status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(res.Status))
		}
	}
	span.End()
}

// storeSpan starts a child span of ctx's for a session store call (name:
// session.resolve, session.repin, session.commit); nil when ctx's span is
// not recorded.
func (g *Gateway) storeSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return g.tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
}

// endStoreSpan ends a store call's span with the session's kind after it.
func endStoreSpan(span trace.Span, st *reqState, b *policy.Backend) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("latch.session", st.sess.Kind.String()))
	if b != nil {
		span.SetAttributes(attribute.String("latch.backend", b.ID))
	}
	span.End()
}

// exemplar is the request duration's exemplar: the trace id of ctx's span
// when sampled, else nil.
func exemplar(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}
