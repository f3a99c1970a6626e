package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/forward"
)

// accessLog counts a request and writes its access line (gateway/accesslog)
// from its result. The session id is never logged raw: a truncated SHA-256
// lets an operator follow one session through the logs without being able
// to replay its cookie.
func (g *Gateway) accessLog(r *http.Request, rt *affinity.Route, s *affinity.Session, res forward.Result, start time.Time) {
	now := time.Now()
	d := now.Sub(start)
	status := res.Status
	routeName, backend := "", ""
	if rt != nil {
		routeName = rt.Name()
	}
	if res.Backend != nil {
		backend = res.Backend.ID
	}
	var ex prometheus.Labels
	if g.tracing != nil {
		ex = exemplar(r.Context())
	}
	if s != nil {
		s.Answered(res.Backend, status, d, ex)
	} else if rt != nil {
		g.metrics.Vectors().Request(routeName, backend, status, d, ex)
	}
	if !g.access.Enabled(r.Context()) {
		return
	}
	e := accesslog.Entry{
		Time: now, RequestID: r.Header.Get("X-Request-Id"), Method: r.Method, Host: r.Host, Path: r.URL.Path,
		Remote: r.RemoteAddr, Route: routeName, Backend: backend, Status: status, Duration: d,
	}
	if s != nil {
		e.Session = s.Kind().String()
		e.ID, e.Hashed = s.ID()
	}
	g.access.Write(&e)
}
