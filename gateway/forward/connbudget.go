package forward

import (
	"context"
	"net/http"
	"time"
)

// The backend connections one client connection may hold at once
// (server.max_backend_connections_per_connection). Issue 23: with a body
// read before any backend is asked, an HTTP/2 connection's 100 streams
// still took 100 backend connections once their bodies came (or with
// none), and 8 connections held ~800 of them at a slow backend.
//
// A request over the budget waits for a slot, as HAProxy queues a request
// behind a server's maxconn: at most transport.dial_timeout (HAProxy's
// timeout queue defaults to its timeout connect), then it is refused 503
// and counted (Observer.Refused, CauseConnBackends). A request holds its
// slot from its first attempt until Serve returns (the response relayed,
// or a tunnel closed), retries included: attempts run one at a time.
// Routes whose backends speak HTTP/2 (backend_protocol h2c or h2) are not
// counted: their streams share backend connections.

// CauseConnBackends names a request refused because its client connection
// held its budget of backend connections for longer than the queue wait.
const CauseConnBackends = "conn_backends"

// connBudget is one client connection's slots: a slot taken is a send,
// given back a receive. Safe for concurrent use (an HTTP/2 connection's
// streams run on goroutines of their own).
type connBudget struct{ slots chan struct{} }

type connBudgetKey struct{}

// WithConnBudget returns ctx carrying a budget of n backend connections,
// for the client connection whose context ctx is: every request served on
// it shares the budget. n ≤ 0: no budget, ctx as it is. The gateway calls
// it from its servers' ConnContext hook.
func WithConnBudget(ctx context.Context, n int) context.Context {
	if n <= 0 {
		return ctx
	}
	return context.WithValue(ctx, connBudgetKey{}, &connBudget{slots: make(chan struct{}, n)})
}

// budgetOf returns the budget of r's client connection (nil: none).
func budgetOf(ctx context.Context) *connBudget {
	b, _ := ctx.Value(connBudgetKey{}).(*connBudget)
	return b
}

// take takes a slot, waiting at most wait, or until ctx ends. It reports
// whether it got one.
func (b *connBudget) take(ctx context.Context, wait time.Duration) bool {
	select {
	case b.slots <- struct{}{}:
		return true
	default:
	}
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case b.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// give returns a slot taken.
func (b *connBudget) give() { <-b.slots }

// admitConn takes a slot of the client connection's budget for x's
// attempts, or answers the client: 503 when the queue wait passed (or the
// route's timeout ended it), nothing (499) when the client left. It
// returns the budget to give the slot back to (nil: no budget applies)
// and whether the request may go on.
func (f *Forwarder) admitConn(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange) (*connBudget, bool) {
	b := budgetOf(r.Context())
	if b == nil || x.spec.HTTP2() {
		return nil, true
	}
	if b.take(ctx, f.cfg.DialTimeout.Get()) {
		return b, true
	}
	if r.Context().Err() != nil {
		x.status = statusClientClosed // the client left while it waited
		return nil, false
	}
	x.status = http.StatusServiceUnavailable
	f.obs.Refused(CauseConnBackends)
	f.log.Debug("request refused: its client connection holds its backend connections", "route", x.spec.Name())
	w.Header().Set("Retry-After", "1")
	PlainError(w, x.status, "latch: too many requests in progress on this connection\n")
	return nil, false
}
