package forward

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/latchgw/latch/policy"
)

// Client faults. Issue 17: an upload the client broke (bad chunked
// framing, a body cut short by a half-close or a reset, a body too slow
// for the server's read timeout or the route's) failed as the backend's
// failure: a few dozen of them opened every breaker, and all traffic got
// 503. The request body is read through replayBody, which records the
// first error reading it; an attempt that failed with such a record is
// the client's: the client gets 400 (408 for a timeout) and the backend's
// breaker, latency statistics and the session are untouched; no other
// backend is tried.

// clientFault is an error reading the client's request body.
type clientFault struct{ err error }

func (e *clientFault) Error() string { return "reading the client's request body: " + e.err.Error() }
func (e *clientFault) Unwrap() error { return e.err }

// The causes of client faults, the label values of the gateway's
// latch_client_errors_total.
const (
	CauseBodyFraming   = "body_framing"   // malformed chunked framing, or any other refusal of the body
	CauseBodyTruncated = "body_truncated" // EOF before the declared length or the last chunk
	CauseBodyReset     = "body_reset"     // the client's connection reset or closed mid-body
	CauseBodyTimeout   = "body_timeout"   // the server's read timeout or the route's, mid-body
)

// cause names what went wrong with the client's body.
func (e *clientFault) cause() string {
	switch {
	case timeout(e.err):
		return CauseBodyTimeout
	case errors.Is(e.err, io.ErrUnexpectedEOF), errors.Is(e.err, io.EOF):
		return CauseBodyTruncated
	case errors.Is(e.err, syscall.ECONNRESET), errors.Is(e.err, syscall.EPIPE), errors.Is(e.err, net.ErrClosed):
		return CauseBodyReset
	}
	var oe *net.OpError
	if errors.As(e.err, &oe) {
		return CauseBodyReset
	}
	return CauseBodyFraming
}

// fault is the recorded failure reading the client's body (nil: none, or
// no body).
func (b *replayBody) fault() *clientFault {
	if b == nil {
		return nil
	}
	return b.failure.Load()
}

// clientFailed answers a request whose body the client broke. An HTTP/1
// connection is closed after the answer: where its body ends is unknown.
// (HTTP/2 frames each stream's body: a Connection: close there would make
// net/http's server end the connection and its other streams with it.)
func (f *Forwarder) clientFailed(w http.ResponseWriter, r *http.Request, x *exchange, cf *clientFault) {
	cause := cf.cause()
	x.outcome, x.retryable, x.err = policy.Ignored, false, cf
	code, msg := http.StatusBadRequest, "latch: malformed or incomplete request body\n"
	if cause == CauseBodyTimeout {
		code, msg = http.StatusRequestTimeout, "latch: request body timed out\n"
	}
	x.status = code
	f.obs.ClientError(x.spec.Name(), cause)
	f.log.Debug("client fault", "route", x.spec.Name(), "cause", cause, "err", cf.err)
	if r.ProtoMajor < 2 {
		w.Header().Set("Connection", "close")
	}
	PlainError(w, code, msg)
}
