package forward

import (
	"io"
	"net/http"
	"strings"

	"github.com/latchgw/latch/policy"
)

// gRPC answers, as the breakers see them. A gRPC server answers 200 to
// almost every call and says how the call ended in the grpc-status field:
// in the trailers after the messages, or in the head of a trailers-only
// response (an error before any message). The HTTP status alone would
// count an UNAVAILABLE backend as healthy; the status is read where it
// comes and mapped to the HTTP status of the same meaning, so that the
// route's breaker.failure_status (and retry.on_status, for a
// trailers-only answer) apply to gRPC as they do to HTTP.

// grpcAnswer reports whether h is the head of a gRPC response.
func grpcAnswer(h http.Header) bool {
	ct := h.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// grpcHTTPStatus maps a grpc-status value to the HTTP status of the same
// meaning (as gRPC's own HTTP mapping, and grpc-gateway, map them), or 0
// for a status that says nothing against the backend: OK, and the codes
// of the caller's mistakes. DEADLINE_EXCEEDED is the client's own
// deadline running out, and CANCELLED its leaving: neither is the
// backend's failure.
func grpcHTTPStatus(v string) int {
	switch v {
	case "14": // UNAVAILABLE
		return http.StatusServiceUnavailable
	case "2", "13", "15": // UNKNOWN, INTERNAL, DATA_LOSS
		return http.StatusInternalServerError
	case "12": // UNIMPLEMENTED
		return http.StatusNotImplemented
	case "8": // RESOURCE_EXHAUSTED
		return http.StatusTooManyRequests
	}
	return 0
}

// grpcTrailers is a gRPC response's body that classifies the call by the
// grpc-status of its trailers once the body ended (the trailers are read
// with its end). ReverseProxy reads the body on the request's goroutine,
// before attempt finishes the ticket with x.outcome.
type grpcTrailers struct {
	io.ReadCloser
	resp *http.Response
	x    *exchange
}

func (g *grpcTrailers) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF {
		if code := grpcHTTPStatus(g.resp.Trailer.Get("Grpc-Status")); code != 0 && g.x.spec.IsFailure(code) {
			g.x.outcome = policy.Failure
		}
	}
	return n, err
}
