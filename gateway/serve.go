package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/forward"
)

// ServeHTTP proxies one request: its route, its session (affinity), the
// forwarding pipeline (pick, forward, retry, commit), then metrics and
// access log.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tbl := g.routes.Table()
	if r.URL.IsAbs() && !tbl.KnowsHost(r.URL.Host) {
		// An absolute-form request URI for a host we do not route: latch is
		// not an open forward proxy.
		forward.PlainError(w, http.StatusBadRequest, "latch: absolute URI for an unknown host\n")
		g.accessLog(r, nil, nil, forward.Result{Status: http.StatusBadRequest}, start)
		return
	}
	rt := tbl.Match(r.Host, r.URL.Path)
	if rt == nil {
		forward.PlainError(w, http.StatusNotFound, "latch: no route\n")
		g.accessLog(r, nil, nil, forward.Result{Status: http.StatusNotFound}, start)
		return
	}
	s := rt.Begin()
	if s == nil {
		g.log.Warn("no backends known yet", "route", rt.Name(), "service", rt.Service())
		forward.PlainError(w, http.StatusServiceUnavailable, "latch: service not discovered yet\n")
		g.accessLog(r, rt, nil, forward.Result{Status: http.StatusServiceUnavailable}, start)
		return
	}
	defer s.End()
	var span trace.Span
	if g.tracing != nil {
		r, span = g.startRequestSpan(r, rt)
	}
	s.Resolve(r)
	res := g.fwd.Serve(w, r, rt.Spec(), s)
	if span != nil {
		endRequestSpan(span, w, r, s, res)
	}
	g.accessLog(r, rt, s, res, start)
	if res.Abort {
		panic(http.ErrAbortHandler) // net/http closes the connection, quietly
	}
}

// The request's server span (tracing on only; the rules of trace context
// and export live in the tracing package), which the pipeline's attempt
// spans and the session store's spans hang under. Every caller tests
// g.tracing first: off, nothing is built.

// startRequestSpan starts r's server span on route rt and returns r with
// it in its context. The client's trace is joined unless trusted_proxies
// is set and r's peer is not among them.
func (g *Gateway) startRequestSpan(r *http.Request, rt *affinity.Route) (*http.Request, trace.Span) {
	ctx, span := g.tracing.StartRequest(r, rt.Name(), len(g.trusted) == 0 || g.fwd.TrustedPeer(r))
	return r.WithContext(ctx), span
}

// endRequestSpan records how the request ended on its span and ends it.
func endRequestSpan(span trace.Span, w http.ResponseWriter, r *http.Request, s *affinity.Session, res forward.Result) {
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.Int("http.response.status_code", res.Status),
			attribute.String("latch.service", s.Route().Service()),
			attribute.String("latch.session", s.Kind().String()),
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

// exemplar is the request duration's exemplar: the trace id of ctx's span
// when sampled, else nil.
func exemplar(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}
