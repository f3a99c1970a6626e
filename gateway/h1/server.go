// Package h1 is an HTTP/1.1 server built for a proxy's public listener:
// a goroutine per connection while it is busy, read and write buffers
// taken from pools only while a request is in flight (an idle keep-alive
// connection holds none), no background read per request, and the
// request, its URL and header map reused per connection. On Linux a plain
// TCP connection idle for a second parks: its goroutine ends and the
// server's epoll watcher waits for its next bytes, starting a goroutine
// for them (park_linux.go); TLS connections and other platforms keep
// their goroutine while idle. It hands an http.Handler a real
// *http.Request and an http.ResponseWriter that is also an http.Flusher
// and an http.Hijacker, so chi and its middleware run unchanged.
//
// Parsing follows RFC 9112 strictly: everything net/http's server rejects
// is rejected, and so are the requests where net/http is lenient and
// intermediaries disagree (a bare LF or CR in the head, obs-fold, repeated
// Content-Length, Transfer-Encoding with Content-Length or in HTTP/1.0,
// chunk extensions outside the RFC's grammar, non-ASCII targets, an empty
// Host). Each is answered 400 and the connection closed; so is any
// Transfer-Encoding but exactly "chunked" (net/http: 501). A chunked body
// found malformed while the handler reads it is answered 400 too, whatever
// the handler then writes (unless its response had begun).
// FuzzDifferential holds it to that against net/http.
//
// What differs from net/http, on purpose:
//   - a handler must not keep the *http.Request, its URL, Header or Body
//     after ServeHTTP returns: they serve the connection's next request;
//   - the request's context is the connection's: it ends when the
//     connection closes, the server closes or the client hangs up (one
//     epoll watcher per server on Linux, not a background read per
//     request; elsewhere the next write notices), not when the handler
//     returns;
//   - no HTTP/2, no request trailers (read and dropped); TLS connections
//     (*tls.Conn) are served, their requests' TLS field set, but read
//     through crypto/tls: buffers are held while waiting for the next
//     request.
package h1

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on listeners. Its fields mean what
// http.Server's of the same name mean; set them before Serve.
type Server struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration // 0: ReadTimeout
	ReadTimeout       time.Duration // head and body; 0: none
	WriteTimeout      time.Duration // from the end of the head to the end of the response; 0: none
	IdleTimeout       time.Duration // between requests; 0: ReadTimeout
	MaxHeaderBytes    int           // the request line and fields; 0: http.DefaultMaxHeaderBytes
	MaxHeaderFields   int           // header field lines in a head (431 beyond); 0: DefaultMaxHeaderFields
	// MaxHeadMemory bounds the bytes all connections' read buffers grow
	// past their first 4 KiB to hold big heads (and chunk lines); a head
	// that would need more is answered 503 and the connection closed.
	// 0: DefaultMaxHeadMemory; negative: no bound.
	MaxHeadMemory int64
	// BaseContext, when set, gives every connection's context its parent.
	BaseContext func(net.Listener) context.Context
	// Log receives handler panics and accept errors (nil: slog.Default()).
	Log *slog.Logger
	// ConnState, when set, is told of each connection as it is accepted
	// (http.StateNew, before anything is read: it may close it) and as it
	// ends (http.StateClosed, or http.StateHijacked), as http.Server's
	// hook of that name is; the states between are not reported.
	ConnState func(net.Conn, http.ConnState)
	// ConnContext, when set, derives each connection's context from the
	// base one, as http.Server's hook of that name does.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// Rejected, when set, is told the kind of each request refused before
	// the handler (answered 400, 408, 413, 417, 431, 503 or 505 and the
	// connection closed), so the refusals can be counted by cause.
	Rejected func(Kind)

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	headMem   atomic.Int64            // bytes reserved by grown read buffers (reserveHead)
	watch     atomic.Pointer[watcher] // notices clients that leave mid-request

	// testHookReject, when set, sees every request rejected before the handler.
	testHookReject func(error)
	// testHookIdle, when set, sees each connection as it starts to wait
	// for its next request.
	testHookIdle func(*conn)
	// parkDelay is how long an idle connection keeps its goroutine before
	// it parks (0: defaultParkAfter; negative: at once, for tests).
	parkDelay time.Duration
}

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on l until it fails or the server shuts down.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		return errors.New("h1: Server.Handler is nil")
	}
	base := context.Background()
	if s.BaseContext != nil {
		base = s.BaseContext(l)
	}
	if !s.track(&l, true) {
		return ErrServerClosed
	}
	defer s.track(&l, false)
	var backoff time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !retryAccept(err) {
				return err
			}
			// As net/http does: 5 ms, doubling to a second, one log line
			// per wait.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log().Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := newConn(s, rwc)
		if !s.trackConn(c, true) {
			rwc.Close()
			return ErrServerClosed
		}
		ctx := base
		if s.ConnContext != nil {
			ctx = s.ConnContext(ctx, rwc)
		}
		if s.ConnState != nil {
			s.ConnState(rwc, http.StateNew)
		}
		go c.serve(ctx)
	}
}

// retryAccept reports whether an accept error passes: a timeout, or one
// of acceptRetry. Anything else (the listener closed) ends Serve.
func retryAccept(err error) bool {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	for _, e := range acceptRetry {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, closes idle connections, and waits for the
// requests in flight to finish (their connections close after them) or
// for ctx to end, whichever is first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeListeners()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			s.watcher(false).stop()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.closeListeners()
	var parked []*conn
	s.mu.Lock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateParked, stateClosed) {
			parked = append(parked, c)
		} else {
			// An idle connection may be parking right now: marked closed
			// first, its park fails and its goroutine ends it (as
			// closeIdle), instead of parking it on a closed socket.
			c.state.CompareAndSwap(stateIdle, stateClosed)
			c.rwc.Close()
		}
	}
	s.mu.Unlock()
	for _, c := range parked {
		c.close() // no goroutine of its own to do it
	}
	s.watcher(false).stop()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		(*l).Close()
	}
}

// closeIdle closes the idle connections and reports whether none is left.
func (s *Server) closeIdle() bool {
	var parked []*conn
	s.mu.Lock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rwc.Close()
		} else if c.state.CompareAndSwap(stateParked, stateClosed) {
			parked = append(parked, c)
		}
	}
	s.mu.Unlock()
	for _, c := range parked {
		c.close() // no goroutine of its own to do it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) == 0
}

func (s *Server) track(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, l)
		return true
	}
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closing.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

// watcher returns the server's watcher, started by the first connection
// with a socket to watch (nil: none yet, or none on this platform; every
// method of *watcher accepts nil).
func (s *Server) watcher(start bool) *watcher {
	if w := s.watch.Load(); w != nil || !start {
		return w
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watch.Load(); w != nil || s.closing.Load() {
		return w
	}
	w := newWatcher()
	s.watch.Store(w)
	return w
}

func (s *Server) parkAfter() time.Duration {
	switch {
	case s.parkDelay > 0:
		return s.parkDelay
	case s.parkDelay < 0:
		return 0
	}
	return defaultParkAfter
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// DefaultMaxHeadMemory is MaxHeadMemory's default: 1,000 connections
// each holding a maximum-size (64 KiB) head at once.
const DefaultMaxHeadMemory = 64 << 20

// reserveHead takes n bytes of head memory; false: none left. Issue 23:
// 800 connections sending 64,000-byte heads took 440 MB (~550 KB each),
// bounded only by max_connections (~5 GB at its default).
func (s *Server) reserveHead(n int) bool {
	limit := s.MaxHeadMemory
	if limit == 0 {
		limit = DefaultMaxHeadMemory
	}
	if limit < 0 {
		s.headMem.Add(int64(n))
		return true
	}
	if s.headMem.Add(int64(n)) > limit {
		s.headMem.Add(-int64(n))
		return false
	}
	return true
}

// DefaultMaxHeaderFields is the field lines a head may have when
// Server.MaxHeaderFields is 0: HAProxy's limit (101 with the request line).
const DefaultMaxHeaderFields = 100

func (s *Server) maxHeaderFields() int {
	if s.MaxHeaderFields > 0 {
		return s.MaxHeaderFields
	}
	return DefaultMaxHeaderFields
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}
