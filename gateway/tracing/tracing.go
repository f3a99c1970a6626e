// Package tracing owns latch's OpenTelemetry traces: the SDK's tracer
// provider and OTLP exporter built from the tracing: settings (the
// standard OTEL_* variables), the W3C trace context taken from clients,
// and the flush at shutdown.
//
// Tracing is off unless an OTLP endpoint is set; then New returns nil and
// the request path builds nothing (callers test for a nil *Tracing, or
// for a recording span, before they make attributes).
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/config"
)

// Scope is the instrumentation scope of latch's spans.
const Scope = "github.com/latchgw/latch/gateway"

// Tracing is a running tracer provider. Safe for concurrent use.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// New builds the tracer provider c asks for, or returns nil when c has no
// endpoint (tracing off). Nothing is dialled here: the exporter connects
// on its first batch. The SDK's errors (a collector that does not answer)
// go to log; OpenTelemetry has one error handler per process, so the last
// New sets it.
func New(ctx context.Context, c config.Tracing, log *slog.Logger) (*Tracing, error) {
	if c.Endpoint == "" {
		return nil, nil
	}
	exp, err := exporter(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	sampler, err := Sampler(c.Sampler, c.SamplerArg)
	if err != nil {
		return nil, fmt.Errorf("tracing.sampler: %w", err)
	}
	attrs, err := ResourceAttributes(c.ResourceAttributes)
	if err != nil {
		return nil, fmt.Errorf("tracing.resource_attributes: %w", err)
	}
	name := c.ServiceName
	if name == "" {
		name = "latch"
	}
	attrs = append(attrs, attribute.String("service.name", name))
	res := resource.NewSchemaless(attrs...)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: exporting spans failed", "err", err)
	}))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
	)
	return &Tracing{tp: tp, tracer: tp.Tracer(Scope)}, nil
}

// exporter is the OTLP exporter of c.Protocol: http/protobuf (the
// specification's default) or grpc. An http:// endpoint is sent to in the
// clear. The other OTEL_EXPORTER_OTLP_* variables (headers, timeout,
// certificates) are read by the exporter itself.
func exporter(ctx context.Context, c config.Tracing) (sdktrace.SpanExporter, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http:// or https:// URL", c.Endpoint)
	}
	switch c.Protocol {
	case "", "http/protobuf":
		// OTEL_EXPORTER_OTLP_ENDPOINT is the base URL: traces go to its
		// /v1/traces.
		full := strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(full))
	case "grpc":
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.Endpoint))
	}
	return nil, fmt.Errorf("protocol %q is not grpc or http/protobuf", c.Protocol)
}

// Tracer is the tracer of latch's spans.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }

// Shutdown flushes the spans not yet exported and stops the exporter,
// waiting at most until ctx ends.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// Close is Shutdown bounded by a few seconds, for a closer list.
func (t *Tracing) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return t.Shutdown(ctx)
}

var traceContext = propagation.TraceContext{}

// StartRequest starts the server span of request r on route. The client's
// traceparent and tracestate are its parent when trusted (the caller
// decides: no trusted_proxies, or a peer among them); else the span starts a new trace
// linked to the client's, so an untrusted client cannot join, or force the
// sampling of, a trace of its choosing.
func (t *Tracing) StartRequest(r *http.Request, route string, trusted bool) (context.Context, trace.Span) {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	var span trace.Span
	if remote := trace.SpanContextFromContext(ctx); remote.IsValid() && !trusted {
		ctx, span = t.tracer.Start(r.Context(), route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote}))
	} else {
		ctx, span = t.tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer))
	}
	// Set after the sampling decision, so that a request not sampled
	// builds none of them.
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", r.Host),
			attribute.String("http.route", route),
		)
	}
	return ctx, span
}

// Sampler maps OTEL_TRACES_SAMPLER's names (and _ARG, a ratio for the
// traceidratio ones; default 1) to the SDK's samplers. Empty is
// parentbased_always_on, the specification's default.
func Sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := 1.0
	if arg != "" && strings.HasSuffix(name, "traceidratio") {
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return nil, fmt.Errorf("sampler_arg %q is not a ratio in [0, 1]", arg)
		}
		ratio = f
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("%q is not one of always_on, always_off, traceidratio, parentbased_always_on, "+
		"parentbased_always_off, parentbased_traceidratio", name)
}

// ResourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: key=value pairs
// separated by commas, values percent-encoded.
func ResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", pair)
		}
		uv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", k, err)
		}
		out = append(out, attribute.String(k, uv))
	}
	return out, nil
}

// FromProvider wraps a tracer provider made elsewhere (tests record spans
// in memory with the SDK's tracetest).
func FromProvider(tp *sdktrace.TracerProvider) *Tracing {
	return &Tracing{tp: tp, tracer: tp.Tracer(Scope)}
}
