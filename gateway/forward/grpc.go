package forward

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// grpcAnswer reports whether h is the head of a gRPC response (or call:
// the same content type).
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
//
// A backend stream that fails after its head went out (the backend died,
// or reset the stream) would make ReverseProxy abort the client's stream,
// which net/http's HTTP/2 server resets with INTERNAL_ERROR: grpc-go
// clients report INTERNAL, a code that says the server is broken and that
// no client retries. The call is ended instead with the status it means:
// UNAVAILABLE (the backend went away; a failure of its), or
// DEADLINE_EXCEEDED when the call's own grpc-timeout had passed (the
// backend dropped a call out of time, as it must; no failure). A client
// that left is not answered: its stream is gone.
type grpcTrailers struct {
	io.ReadCloser
	resp *http.Response
	x    *exchange
}

func (g *grpcTrailers) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		if code := grpcHTTPStatus(g.resp.Trailer.Get("Grpc-Status")); code != 0 && g.x.spec.IsFailure(code) {
			g.x.outcome = policy.Failure
		}
	case err != nil && g.resp.Request.Context().Err() == nil:
		status, msg := "14", "latch: the backend's stream failed"
		if grpcExpired(g.resp.Request.Header.Get("Grpc-Timeout"), g.x.start, time.Now()) {
			status, msg = "4", "latch: deadline exceeded"
		} else {
			g.x.outcome = policy.Failure
		}
		if g.resp.Trailer == nil {
			g.resp.Trailer = http.Header{}
		}
		g.resp.Trailer.Set("Grpc-Status", status)
		g.resp.Trailer.Set("Grpc-Message", msg)
		return n, io.EOF
	}
	return n, err
}

// grpcExpired reports whether a call sent at start with grpc-timeout v
// ("" : none) is out of time at now. v is up to 8 digits and a unit: H,
// M, S, m (milliseconds), u (microseconds) or n (nanoseconds).
func grpcExpired(v string, start, now time.Time) bool {
	if len(v) < 2 || len(v) > 9 {
		return false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return false
	}
	if n > int64(math.MaxInt64/unit) {
		return false // past what a Duration holds (99,999,999H): never, as far as latch can tell
	}
	return !now.Before(start.Add(time.Duration(n) * unit))
}
