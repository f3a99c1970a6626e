package gateway

import (
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// reqState is one proxied request's state on the gateway's side: its
// route, the backends of the moment, its session. It is the
// forward.Session of the request. Pooled.
type reqState struct {
	g      *Gateway
	rt     *route
	rs     *routeState
	req    session.Request
	sess   session.Decision
	pinned *policy.Backend // the session's backend, offered first (nil: pick)
	asked  bool            // Next was called
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

var _ forward.Session = (*reqState)(nil)

// Next offers the session's backend first, then the policy's picks.
func (st *reqState) Next(r *http.Request, skip *policy.Skip) *policy.Backend {
	if !st.asked {
		st.asked = true
		if st.pinned != nil {
			return st.pinned
		}
	}
	picked, err := st.rs.chain.Pick(r, *skip)
	if err != nil {
		return nil
	}
	return st.g.sessionPicked(r, st, picked, skip)
}

// Commit stores the session's pin and sets its cookie on the response.
func (st *reqState) Commit(h http.Header, r *http.Request, b *policy.Backend) {
	st.g.commitSession(h, r, st, b)
}

// Upstream observes b's time to its response head.
func (st *reqState) Upstream(b *policy.Backend, d time.Duration) { st.rs.series.upstream(b, d) }

// ServeHTTP proxies one request: route, session, then the forwarding
// pipeline (pick, forward, retry, commit), then metrics and access log.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tbl := g.table.Load()
	if r.URL.IsAbs() && !tbl.knowsHost(r.URL.Host) {
		// An absolute-form request URI for a host we do not route: latch is
		// not an open forward proxy.
		forward.PlainError(w, http.StatusBadRequest, "latch: absolute URI for an unknown host\n")
		g.accessLog(r, nil, nil, forward.Result{Status: http.StatusBadRequest}, start)
		return
	}
	rt := tbl.match(r.Host, r.URL.Path)
	if rt == nil {
		forward.PlainError(w, http.StatusNotFound, "latch: no route\n")
		g.accessLog(r, nil, nil, forward.Result{Status: http.StatusNotFound}, start)
		return
	}
	rs := rt.state.Load()
	if rs == nil {
		g.log.Warn("no backends known yet", "route", rt.name, "service", rt.service.name)
		forward.PlainError(w, http.StatusServiceUnavailable, "latch: service not discovered yet\n")
		g.accessLog(r, rt, nil, forward.Result{Status: http.StatusServiceUnavailable}, start)
		return
	}
	st := statePool.Get().(*reqState)
	*st = reqState{g: g, rt: rt, rs: rs}
	defer statePool.Put(st)
	var span trace.Span
	if g.tracing != nil {
		r, span = g.startRequestSpan(r, rt)
	}
	st.pinned = g.resolveSession(r, st)
	res := g.fwd.Serve(w, r, rt.spec, st)
	if span != nil {
		endRequestSpan(span, w, r, st, res)
	}
	g.accessLog(r, rt, st, res, start)
	if res.Abort {
		panic(http.ErrAbortHandler) // net/http closes the connection, quietly
	}
}
