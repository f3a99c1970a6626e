package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// reqState is one proxied request's state, shared with the ReverseProxy
// hooks through the request context. Pooled: the request path allocates it
// once per request at most.
type reqState struct {
	rt      *route
	rs      *routeState
	backend *policy.Backend
	skip    policy.Skip

	// attempt bookkeeping, reset per attempt
	outcome   policy.Outcome
	retryable bool  // the attempt failed before anything reached the client
	err       error // the last upstream error
	status    int   // status written to the client (0: none yet)
	canRetry  bool  // another attempt may follow this one

	body  *replayBody
	sess  sessionState
	abort bool // the response was cut: close the client's connection

	upstream time.Duration // time to the backend's response headers
	start    time.Time
}

type stateKey struct{}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// errRetryStatus is returned by ModifyResponse to drop a retryable 5xx.
var errRetryStatus = errors.New("retryable upstream status")

// dialError marks an error from dialing a backend: nothing was sent, so the
// request can go to another backend. (Caddy's DialError plays this part.)
type dialError struct{ err error }

func (e dialError) Error() string { return "dial backend: " + e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

// newTransport is the transport to backends: keep-alive pools sized for
// many backends, bounded dials and header waits, dial errors typed.
func newTransport(cfg config.Transport) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout.Get(), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // never an environment proxy between latch and its backends
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, dialError{err}
			}
			return c, nil
		},
		MaxIdleConns:          cfg.MaxIdleConns.Get(),
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost.Get(),
		IdleConnTimeout:       cfg.IdleConnTimeout.Get(),
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout.Get(),
		ExpectContinueTimeout: time.Second,
		// Backends are reached over plain HTTP/1.1 on a private network;
		// compression is the client's business, not the hop's.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
}

// copyBuffers are the 32 KiB buffers both paths copy bodies with. A
// channel, not a sync.Pool: putting a slice back in a sync.Pool allocates.
var copyBuffers = &bufferPool{free: make(chan []byte, 1024)}

type bufferPool struct{ free chan []byte }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, 32<<10)
	}
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < 32<<10 {
		return
	}
	select {
	case b.free <- buf[:32<<10]:
	default:
	}
}

func (g *Gateway) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      g.transport,
		BufferPool:     copyBuffers,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.errorHandler,
		ErrorLog:       slogErrorLog(g.log),
	}
}

// rewrite points the outbound request at the chosen backend. ReverseProxy
// has already removed hop-by-hop headers and the client's Forwarded and
// X-Forwarded-* headers from pr.Out.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = st.backend.Addr
	if st.rt.spec.Strips() {
		out.URL.Path = st.rt.stripPrefix(pr.In.URL.Path)
		if pr.In.URL.RawPath != "" {
			out.URL.RawPath = st.rt.stripPrefix(pr.In.URL.RawPath)
		}
	}
	out.Host = pr.In.Host // backends see the host the client asked for
	if g.trustedPeer(pr.In) {
		// Keep the trusted proxy's chain and append its address to it.
		if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
			out.Header["X-Forwarded-For"] = prior
		}
		pr.SetXForwarded()
		if p := pr.In.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			out.Header.Set("X-Forwarded-Proto", p)
		}
		if h := pr.In.Header.Get("X-Forwarded-Host"); h != "" {
			out.Header.Set("X-Forwarded-Host", h)
		}
	} else {
		// An untrusted client's own X-Forwarded-For was dropped: the
		// chain starts at its address.
		if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
			out.Header["X-Forwarded-For"] = []string{ip}
		}
		out.Header["X-Forwarded-Host"] = []string{pr.In.Host}
		if pr.In.TLS != nil {
			out.Header["X-Forwarded-Proto"] = []string{"https"}
		} else {
			out.Header["X-Forwarded-Proto"] = []string{"http"}
		}
	}
	if id := pr.In.Header.Get("X-Request-Id"); id != "" {
		out.Header["X-Request-Id"] = []string{id}
	}
}

// modifyResponse runs once the backend answered, before anything is
// written to the client.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	st.upstream = time.Since(st.start)
	code := resp.StatusCode
	if st.rt.spec.IsFailure(code) {
		st.outcome = policy.Failure
	} else {
		st.outcome = policy.Success
	}
	if st.canRetry && st.rt.spec.RetriesOn(code) &&
		idempotent(resp.Request.Method) && st.body.untouched() {
		st.retryable = true
		return errRetryStatus
	}
	g.commitSession(resp.Header, resp.Request, st)
	st.status = code
	return nil
}

// errorHandler runs when the round trip failed (or modifyResponse asked
// for a retry). It answers the client only when no retry will follow.
func (g *Gateway) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	g.attemptFailed(r.Context(), w, stateOf(r.Context()), err)
}

// attemptFailed records an attempt that got no usable answer, and answers
// the client unless another attempt will follow.
func (g *Gateway) attemptFailed(ctx context.Context, w http.ResponseWriter, st *reqState, err error) {
	st.err = err
	switch {
	case errors.Is(err, errRetryStatus):
		return // outcome set by modifyResponse; the loop tries the next backend
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		st.outcome = policy.Ignored // the client went away
		st.status = statusClientClosed
		return
	}
	st.outcome = policy.Failure
	var de dialError
	if errors.As(err, &de) && st.body.untouched() {
		st.retryable = true
		if st.canRetry {
			return
		}
	}
	g.writeUpstreamError(w, st, err)
}

// statusClientClosed is logged (never sent) when the client left first.
const statusClientClosed = 499

func (g *Gateway) writeUpstreamError(w http.ResponseWriter, st *reqState, err error) {
	code, msg := http.StatusBadGateway, "latch: upstream error\n"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code, msg = http.StatusGatewayTimeout, "latch: upstream timed out\n"
	}
	st.status = code
	g.log.Warn("upstream failed", "route", st.rt.name, "backend", backendID(st.backend), "status", code, "err", err)
	plainError(w, code, msg)
}

func plainError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Del("Set-Cookie")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func backendID(b *policy.Backend) string {
	if b == nil {
		return ""
	}
	return b.ID
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// replayBody lets a request body go to a second backend when the first
// attempt read none of it: ReverseProxy closes the body after a failed
// round trip, so Close is deferred to the server, which owns it.
type replayBody struct {
	rc   io.ReadCloser
	read bool
}

func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.read = true
	}
	return n, err
}

func (b *replayBody) Close() error { return nil }

// untouched reports whether no byte of the body was consumed (true when
// there is no body).
func (b *replayBody) untouched() bool { return b == nil || !b.read }

// ServeHTTP proxies one request: route, session, pick, forward, retry.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tbl := g.table.Load()
	if r.URL.IsAbs() && !tbl.knowsHost(r.URL.Host) {
		// An absolute-form request URI for a host we do not route: latch is
		// not an open forward proxy.
		plainError(w, http.StatusBadRequest, "latch: absolute URI for an unknown host\n")
		g.accessLog(r, nil, nil, http.StatusBadRequest, start)
		return
	}
	rt := tbl.match(r.Host, r.URL.Path)
	if rt == nil {
		plainError(w, http.StatusNotFound, "latch: no route\n")
		g.accessLog(r, nil, nil, http.StatusNotFound, start)
		return
	}
	rs := rt.state.Load()
	if rs == nil {
		g.log.Warn("no backends known yet", "route", rt.name, "service", rt.service.name)
		plainError(w, http.StatusServiceUnavailable, "latch: service not discovered yet\n")
		g.accessLog(r, rt, nil, http.StatusServiceUnavailable, start)
		return
	}

	st := statePool.Get().(*reqState)
	*st = reqState{rt: rt, rs: rs, start: start}
	defer statePool.Put(st)
	fast := fastPath(r)
	ctx := r.Context()
	if rt.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}
	if !fast {
		// ReverseProxy's hooks find the state in the request's context.
		if r.Body != nil && r.Body != http.NoBody {
			st.body = &replayBody{rc: r.Body}
			r.Body = st.body
		}
		r = r.WithContext(context.WithValue(ctx, stateKey{}, st))
	}

	b := g.resolveSession(r, st)
	// Every attempt is a backend tried: a dial error, an open breaker or
	// (when configured) a retryable 5xx moves the request to another one,
	// as long as nothing reached the client.
	for attempt := 0; attempt < rt.attempts; attempt++ {
		if attempt > 0 {
			g.metrics.retry(rt.name)
		}
		if b == nil {
			picked, err := rs.chain.Pick(r, st.skip)
			if err != nil {
				break
			}
			b = g.sessionPicked(r, st, picked)
		}
		ticket, err := b.Acquire()
		if err != nil {
			st.err = err
			st.skip.Add(b)
			b = nil
			continue
		}
		st.backend = b
		st.outcome, st.retryable, st.canRetry = policy.Success, false, attempt+1 < rt.attempts
		st.start = time.Now()
		if fast {
			g.forward(ctx, w, r, st)
		} else {
			g.proxy.ServeHTTP(w, r)
		}
		ticket.Done(st.outcome)
		g.metrics.upstream(rt.name, b.ID, st.upstream)
		if !st.retryable || st.status != 0 {
			break
		}
		g.log.Debug("retrying on another backend", "route", rt.name, "backend", b.ID, "err", st.err)
		st.skip.Add(b)
		b = nil
	}
	if st.status == 0 { // nothing answered the client
		if st.err != nil {
			g.writeUpstreamError(w, st, st.err)
		} else {
			g.log.Warn("no usable backend", "route", rt.name, "service", rt.service.name,
				"backends", len(rs.set.Backends))
			st.status = http.StatusServiceUnavailable
			plainError(w, st.status, "latch: no usable backend\n")
		}
	}
	g.accessLog(r, rt, st, st.status, start)
	if st.abort {
		panic(http.ErrAbortHandler) // net/http closes the connection, quietly
	}
}

// trustedPeer reports whether r came from a configured trusted proxy.
func (g *Gateway) trustedPeer(r *http.Request) bool {
	if len(g.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
