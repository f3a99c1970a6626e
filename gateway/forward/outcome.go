package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// An attempt's outcome, the one classification of both paths: what the
// breaker and the latency statistics are told, whether another backend may
// be tried, and what the client gets.

// errRetryStatus marks an answer dropped to try another backend.
var errRetryStatus = errors.New("retryable upstream status")

// dialError marks an error from dialing a backend: nothing was sent, so the
// request can go to another backend. (Caddy's DialError plays this part.)
type dialError struct{ err error }

func (e dialError) Error() string { return "dial backend: " + e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

// statusClientClosed is logged (never sent) when the client left first.
const statusClientClosed = 499

// answered classifies a backend's response head with status code: it sets
// the breaker outcome and reports whether the answer is dropped to try
// another backend. That happens once per request, for an idempotent
// request whose body (if any) nobody read, answered with a retry.on_status
// code while attempts remain, and only when another backend can take it:
// that one is picked now, before the answer is dropped, so that with
// nobody else to ask the client gets the backend's own answer rather than
// an error of latch's.
func (x *exchange) answered(r *http.Request, code int) (retry bool) {
	x.outcome = policy.Success
	if x.spec.IsFailure(code) {
		x.outcome = policy.Failure
	}
	if !x.canRetry || x.resent || !x.spec.RetriesOn(code) || !resendable(r, x.spec) || !x.body.untouched() {
		return false
	}
	skip := x.skip
	skip.Add(x.backend)
	if d, ok := x.picker.(Decliner); ok {
		d.Declined(x.backend)
	}
	next, done := x.picker.Pick(r, &skip)
	// A backend waiting on the picker's re-pin is there too: the loop
	// settles it before its next pass.
	if next == nil && !x.picker.Waiting() || !x.body.detach(x.gen) {
		return false
	}
	x.next, x.nextDone, x.resent, x.retryable, x.err = next, done, true, true, errRetryStatus
	return true
}

// failed classifies an attempt that got no usable answer, and answers the
// client unless another attempt will follow.
func (f *Forwarder) failed(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	x.err = err
	if cf := x.body.fault(); cf != nil {
		f.clientFailed(w, r, x, cf) // whatever the transport made of it
		return
	}
	switch {
	case errors.Is(err, errRetryStatus):
		return // classified by answered; the loop tries the next backend
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		x.outcome, x.status = policy.Ignored, statusClientClosed // the client went away
		return
	}
	x.outcome = policy.Failure
	var de dialError
	if (errors.As(err, &de) || refusedHandshake(err)) && x.body.detach(x.gen) {
		x.retryable = true
		if x.canRetry {
			return
		}
	}
	// The request reached the backend, which failed before answering (a
	// backend killed with requests in flight resets their connections).
	// A request RFC 9110 §9.2.2 lets go again (resendable), whose body
	// nobody read and of whose answer no byte arrived, goes once more to
	// another backend, as HAProxy's retry-on empty-response with
	// redispatch does. Not after a timeout: a slow backend's request would
	// only add to the load. Not after part of an answer: the backend acted
	// on it.
	if x.canRetry && !x.resent && resendable(r, x.spec) && !x.replied && !timeout(err) && x.body.detach(x.gen) {
		x.resent, x.retryable = true, true
		return
	}
	f.writeError(w, x, err)
}

// timeout reports whether err is a timeout: a context's deadline or a
// connection's (a net.Error that says Timeout). The one classification of
// timeouts: a timed-out request is not resent, the client gets 504, and a
// slow backend is told from a stale connection by it.
func timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// cut classifies a response that failed after its head went out: the
// client's failure (it left) or the backend's.
func (x *exchange) cut(ctx context.Context, err error) {
	x.abort = true // the client got a cut response: close its connection
	if errors.Is(err, errClientGone) || errors.Is(ctx.Err(), context.Canceled) {
		x.outcome, x.status = policy.Ignored, statusClientClosed // the client left: not the backend's failure
		return
	}
	x.outcome = policy.Failure
}

// writeError answers the client for a failed request: 504 on a timeout,
// else 502.
func (f *Forwarder) writeError(w http.ResponseWriter, x *exchange, err error) {
	code, msg := http.StatusBadGateway, "latch: upstream error\n"
	if timeout(err) {
		code, msg = http.StatusGatewayTimeout, "latch: upstream timed out\n"
	}
	x.status = code
	f.warn(&f.upstreamFailed, "upstream failed", x, code, err)
	PlainError(w, code, msg)
}

// PlainError answers with a short text body (and no cookie).
func PlainError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Del("Set-Cookie")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// resendable reports whether r may be sent again after it may have reached
// a backend: its method is idempotent (RFC 9110 §9.2.2), or the client
// marked it so with Idempotency-Key (or X-Idempotency-Key), as net/http's
// Transport accepts, or the route marked its path so
// (retry.idempotent_paths: a gRPC method's). The caller still checks that
// no attempt read its body and that no byte of an answer arrived.
func resendable(r *http.Request, spec *config.Spec) bool {
	return idempotent(r.Method) || r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil ||
		spec.IdempotentPath(r.URL.Path)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
