// Package forward is latch's one forwarding pipeline: from the moment the
// gateway knows a request's route and session to the last byte of the
// response. In the order a request runs it:
//
//  1. Serve asks the Picker for a backend (its pin, else a pick), takes
//     the backend's breaker ticket (a refusal costs no attempt) and sends
//     one attempt;
//  2. the attempt goes by the fast path (fast.go: every request but an
//     upgrade, written straight to a pooled connection, pool.go, its body
//     streamed by upload.go, its response read by response.go) or through
//     httputil.ReverseProxy (proxy.go: upgrades, WebSocket, and every
//     request of a route whose backends speak HTTP/2, h2.go); both write
//     the same outbound head (head.go);
//  3. the answer is classified once (outcome.go): breaker success or
//     failure, retry on another backend or not, the status the client gets;
//     a request body the client broke is the client's fault, no backend's
//     (clientfault.go);
//  4. before the response head goes out the pick's done commits (the
//     cookie); when the picker must re-pin before another backend is
//     tried, the pass ends and Settle does it (Redis) before the next one;
//  5. the ticket is finished with the time to the response head, and the
//     loop retries on another backend while nothing reached the client.
//
// With a tracer (tracing on) each attempt is a span, whose context the
// backend gets as traceparent, and a breaker's refusal an event (trace.go).
//
// It knows backends (policy.Backend) and routes (config.Spec), never
// cookies or Consul.
package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// Picker chooses a request's backends, as a picker does in grpc-go's
// balancer: the gateway's affinity layer hands one to Serve per request.
// Every method runs on the request's goroutine.
type Picker interface {
	// Pick returns the backend for the next attempt; skip holds the
	// backends tried or refused so far. It never blocks and does no I/O.
	// A nil backend means none now: none left, or one waiting on I/O that
	// Settle does (Waiting says which). done, when not nil, is called with
	// b once b answered, before the response head goes to the client; it
	// may add fields (Set-Cookie) to h, and may do I/O bounded by its own
	// timeout: no other attempt follows it. (b is passed back so that a
	// picker can hand out one func for all its picks, allocating nothing.)
	Pick(r *http.Request, skip *policy.Skip) (b *policy.Backend, done func(h http.Header, b *policy.Backend))
	// Waiting reports whether the last Pick's nil stands for a backend
	// that waits on Settle (a re-pin's compare-and-swap), not for none.
	Waiting() bool
	// Settle runs when Pick returned nil, after one pass of the loop and
	// before the next, never during an attempt: it may block (bounded by
	// its own timeout) and reports whether another pass should start
	// (Pick has a backend again).
	Settle(r *http.Request, skip *policy.Skip) bool
	// Upstream observes backend b's time to its response head (metrics:
	// the picker knows the route's series of the moment).
	Upstream(b *policy.Backend, toHeaders time.Duration)
}

// Decliner is a Picker told why it is asked again: Declined(b) runs just
// before the Pick that follows backend b's answer with a retry.on_status
// code, an answer the backend gave (it is up) and that is dropped for
// another backend's. A pick after a failed attempt (no answer) follows no
// Declined. Like Pick it runs on the request's goroutine, never blocks
// and does no I/O.
type Decliner interface {
	Declined(b *policy.Backend)
}

// Observer receives the pipeline's measurements (Prometheus in the
// gateway). Methods must be cheap and safe for concurrent use.
type Observer interface {
	Retry(route string)
	// ClientError counts a request whose body the client broke, by cause
	// (CauseBodyFraming, …): not a failure of any backend.
	ClientError(route, cause string)
	// Refused counts a request refused before any backend was asked, by
	// cause (CauseConnBackends).
	Refused(cause string)
}

// Result is how a forwarded request ended.
type Result struct {
	// Status written to the client (499: the client left first).
	Status int
	// Backend is the last backend tried (nil: none).
	Backend *policy.Backend
	// Abort: the response was cut short; the caller must close the
	// client's connection (panic(http.ErrAbortHandler)) once it has
	// logged the request.
	Abort bool
}

// Forwarder sends requests to backends. Safe for concurrent use.
type Forwarder struct {
	pool    *pool
	rp      *httputil.ReverseProxy
	trusted []netip.Prefix
	log     *slog.Logger
	obs     Observer

	// Routes with backend_tls have a pool per TLS config (backendtls.go).
	cfg      config.Transport
	tlsPools sync.Map // config.TLSKey → *pool
	// Routes with backend_protocol h2c or h2 have an HTTP/2 Transport
	// (h2.go).
	h2 sync.Map // h2Key → *http.Transport
	// Warnings of failed requests, each kind rate-limited (logging.go).
	upstreamFailed, relayFailed, noBackend limiter
	// bodyTimeout bounds each wait for bytes of a request body (0: none;
	// SetBodyTimeout).
	bodyTimeout time.Duration
	// slowOnly sends every request through ReverseProxy (tests run each
	// case over both paths).
	slowOnly bool
	// tracer makes the attempts' spans (nil: tracing off; trace.go).
	tracer trace.Tracer
}

// New builds the pipeline: a connection pool per backend address for the
// fast path and a ReverseProxy over an http.Transport for the rest, both
// tuned by t; trusted are the proxies whose X-Forwarded-* are believed.
func New(t config.Transport, trusted []netip.Prefix, log *slog.Logger, obs Observer) *Forwarder {
	f := &Forwarder{cfg: t, pool: newPool(t), trusted: trusted, log: log, obs: obs}
	f.rp = f.newReverseProxy()
	return f
}

// SetDial replaces how the fast path dials backends (benchmarks dial
// in-memory pipes). Call it before serving.
func (f *Forwarder) SetDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	f.pool.dial = dial
}

// SetBodyTimeout bounds each wait for the next bytes of a request body
// (server.body_timeout; 0: none): a client that stops sending gets 408,
// its fault, no backend's. Call it before serving.
func (f *Forwarder) SetBodyTimeout(d time.Duration) { f.bodyTimeout = d }

// CloseIdleConnections closes every idle backend connection, both paths.
func (f *Forwarder) CloseIdleConnections() {
	f.pool.closeIdleConnections()
	f.closeTLSIdle()
	f.closeH2Idle()
}

// exchange is one request's state in the pipeline, shared with the
// ReverseProxy hooks through the request context. Pooled.
type exchange struct {
	spec    *config.Spec
	picker  Picker
	backend *policy.Backend
	done    func(http.Header, *policy.Backend) // Pick's for backend: commits its answer
	skip    policy.Skip

	// per attempt
	outcome   policy.Outcome
	retryable bool  // the attempt failed before anything reached the client
	replied   bool  // a byte of the backend's answer arrived (resend rules)
	err       error // the last upstream error
	canRetry  bool  // another attempt may follow this one
	start     time.Time
	toHeaders time.Duration // time to the backend's response head (0: none)
	gen       uint32        // the body generation this attempt reads

	// next is the backend a retry on status goes to, picked before the
	// answer was dropped. resent: the one retry of a request that reached
	// a backend (on status, or on a failure before the answer) was spent.
	next     *policy.Backend
	nextDone func(http.Header, *policy.Backend)
	resent   bool

	status int  // written to the client (0: nothing yet)
	abort  bool // the response was cut: close the client's connection
	body   *replayBody

	// The attempt's span and its context as the backend gets it (tracing
	// on only; trace.go): writeHead sends these in place of the client's.
	span                    trace.Span
	traceparent, tracestate string
}

type exchangeKey struct{}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// Serve forwards r on spec's route, trying backends from p until one
// answers or spec's attempts are spent, and answers the client itself when
// none does (502/504 after a failure, 503 without a usable backend).
func (f *Forwarder) Serve(w http.ResponseWriter, r *http.Request, spec *config.Spec, p Picker) Result {
	x := exchanges.Get().(*exchange)
	*x = exchange{spec: spec, picker: p}
	defer exchanges.Put(x)
	fast := !f.slowOnly && !spec.HTTP2() && fastPath(r)
	ctx := r.Context()
	if t := spec.Timeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	if r.Body != nil && r.Body != http.NoBody {
		// The attempts read the body through x.body: it knows whether it
		// may be sent again and whether reading it failed (the client's
		// fault).
		x.body = &replayBody{rc: r.Body, length: r.ContentLength, timeout: f.bodyTimeout, ctl: http.NewResponseController(w)}
		defer x.body.release()
		// A read blocked on a slow client must end with the route's timeout
		// (the server's read timeout ends it on its own), whoever reads:
		// awaitFirst, sendBody, or ReverseProxy's Transport. It fails as a
		// timeout, the client's. (A cancellation is the client gone: its
		// reads fail on their own, as what they are.)
		stop := context.AfterFunc(ctx, func() {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				x.body.cut()
			}
		})
		defer stop()
		// A stream of unknown length to an HTTP/2 backend (gRPC's client
		// and bidirectional streams) goes at once: its client may wait for
		// the backend's first message before it sends one of its own.
		// Not a call whose path is marked idempotent: its (small) body is
		// held whole, so that it can go to another backend.
		keep := spec.IdempotentPath(r.URL.Path)
		stream := spec.HTTP2() && r.ContentLength < 0 && !keep
		if !expectsContinue(r) && !stream { // else the backend says whether it wants the body
			x.body.awaitFirst(keep)
			if cf := x.body.fault(); cf != nil {
				f.clientFailed(w, r, x, cf) // no backend was asked
				return Result{Status: x.status}
			}
		}
	}
	if b, ok := f.admitConn(ctx, w, r, x); !ok {
		return Result{Status: x.status}
	} else if b != nil {
		defer b.give()
	}
	if !fast {
		// ReverseProxy's hooks find the exchange in the request's context
		// (on this copy of r).
		r = r.WithContext(context.WithValue(ctx, exchangeKey{}, x))
	}
	attempts := 0
	// Each backend considered is remembered in skip: a breaker that
	// refuses moves the request on without using an attempt (nothing was
	// sent), and the loop ends when skip is full. When Pick has nothing
	// now but a backend waits on the picker's I/O (a re-pin), this pass
	// ends there, before any other backend is tried: Settle does the I/O
	// between two passes, and the next pass starts with its backend.
	for considered := 0; attempts < spec.Attempts() && considered < policy.MaxSkip; considered++ {
		b, done := x.next, x.nextDone
		if x.next, x.nextDone = nil, nil; b == nil {
			b, done = p.Pick(r, &x.skip)
		}
		if b == nil {
			if p.Waiting() && p.Settle(r, &x.skip) {
				continue
			}
			break
		}
		ticket, err := b.Acquire()
		if err != nil {
			if f.tracer != nil {
				traceRefusal(ctx, b, err)
			}
			x.err = err
			x.skip.Add(b)
			continue
		}
		if attempts > 0 {
			f.obs.Retry(spec.Name())
		}
		attempts++
		x.backend, x.done, x.outcome, x.retryable, x.replied, x.toHeaders = b, done, policy.Success, false, false, 0
		x.canRetry = attempts < spec.Attempts()
		if f.tracer != nil {
			f.startAttempt(ctx, x, attempts)
		}
		f.attempt(ctx, w, r, x, fast, ticket)
		if !x.retryable || x.status != 0 {
			break
		}
		f.log.Debug("retrying on another backend", "route", spec.Name(), "backend", b.ID, "err", x.err)
		x.skip.Add(b)
	}
	if x.status == 0 { // nothing answered the client
		if x.err != nil {
			f.writeError(w, x, x.err)
		} else {
			x.status = http.StatusServiceUnavailable
			f.warn(&f.noBackend, "no usable backend", x, x.status, nil)
			PlainError(w, x.status, "latch: no usable backend\n")
		}
	}
	return Result{Status: x.status, Backend: x.backend, Abort: x.abort}
}

// attempt sends r to x.backend once and finishes its ticket. ReverseProxy
// panics with http.ErrAbortHandler when a response is cut mid-body: the
// panic is taken back here, so the ticket is finished and the caller
// still logs the request before closing the connection (Result.Abort).
// Any other panic goes on up, after the ticket is finished as a failure.
func (f *Forwarder) attempt(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange, fast bool, t policy.Ticket) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				// Issue 22: re-raised before Finish, the panic leaked the
				// in-flight count, and a half-open breaker's probe was never
				// returned: the backend stayed refused. An attempt that
				// panicked is no proof the backend recovered: a failure.
				t.Finish(policy.Failure, x.toHeaders)
				panic(p)
			}
			x.cut(ctx, nil)
		}
		// The latency statistics get the time to the response head: a long
		// download, a stream or a WebSocket says nothing of the backend's
		// speed.
		t.Finish(x.outcome, x.toHeaders)
		if x.toHeaders > 0 {
			x.picker.Upstream(x.backend, x.toHeaders)
		}
		if x.span != nil {
			x.endAttempt()
		}
	}()
	x.start = time.Now()
	if x.body != nil {
		// A new view per attempt: the last attempt's transport may still
		// hold its own.
		x.gen = x.body.state.Load() >> 1
	}
	if fast {
		f.forwardFast(ctx, w, r, x)
		return
	}
	f.forwardProxy(w, r, x)
}
