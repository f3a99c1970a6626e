package tlsserve

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/latchgw/latch/gateway/h1"
)

// HTTP is net/http serving TLS (HTTP/1.1, and HTTP/2 by ALPN) with
// its TLSConfig, on a plain listener (so Run still sees a shared
// listener's type).
type HTTP struct{ *http.Server }

// Serve serves TLS on l with the server's TLSConfig.
func (s HTTP) Serve(l net.Listener) error { return s.ServeTLS(l, "", "") }

// Caps counts connections against the public listener's caps
// (server.max_connections and max_connections_per_ip). Admit counts c in
// and returns "", or returns the cap that refuses it; Release counts out a
// connection Admit took (and ignores any other). Both are called
// concurrently, from the accept loop and the handshakes' goroutines.
type Caps interface {
	Admit(c net.Conn) (refused string)
	Release(c net.Conn)
}

// SplitServer serves TLS connections with h1 (HTTP/1.x) and net/http's
// HTTP/2 server (ALPN h2); without Config, plain ones, sorted by their
// first bytes (Peek: h2c). A connection counts against Caps from accept:
// through its handshake, then in the server it goes to. Set its fields,
// then call Serve once; Shutdown and Close may come from any goroutine.
type SplitServer struct {
	// Config is every handshake's TLS config (Config above); nil: plain
	// connections, sorted by Peek.
	Config *tls.Config
	// Peek, without Config, waits for a connection's first bytes and tells
	// whether they are HTTP/2's preface, reading nothing (gateway's h2c).
	Peek func(net.Conn) (h2 bool, err error)
	// H1 serves the connections that did not negotiate h2; H2 those that
	// did (its TLSConfig is not used: the handshake is done here).
	H1 *h1.Server
	H2 *http.Server
	// Timeout bounds a handshake (HandshakeTimeout); 0: no bound.
	Timeout time.Duration
	// Caps, when set, caps the connections, handshaking ones included.
	Caps Caps
	// Log is told of failed accepts (a warning).
	Log func(msg string, args ...any)

	mu      sync.Mutex
	closed  bool
	outer   net.Listener
	h1l     *connListener
	h2l     *connListener
	pending map[net.Conn]struct{} // handshaking
	served  sync.WaitGroup        // the two servers' Serve
}

// Serve accepts on l until Shutdown or Close.
func (s *SplitServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.outer, s.pending = l, map[net.Conn]struct{}{}
	s.h1l, s.h2l = newConnListener(l.Addr()), newConnListener(l.Addr())
	s.mu.Unlock()
	s.served.Go(func() { _ = s.H1.Serve(s.h1l) })
	s.served.Go(func() { _ = s.H2.Serve(s.h2l) })
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return http.ErrServerClosed
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Log("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// The servers see tc: counted in as tc, it is counted out when
		// they are done with it.
		tc := s.open(c)
		if s.Caps != nil && s.Caps.Admit(tc) != "" {
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			s.release(tc)
			return http.ErrServerClosed
		}
		s.pending[c] = struct{}{}
		s.mu.Unlock()
		go s.handshake(c, tc)
	}
}

// open is the connection the servers get for c: c in TLS, or c itself
// (h2c).
func (s *SplitServer) open(c net.Conn) net.Conn {
	if s.Config == nil {
		return c
	}
	return tls.Server(c, s.Config)
}

// handshake completes tc's TLS handshake over c (or, h2c, waits for its
// first bytes) and hands it to the server of its protocol.
func (s *SplitServer) handshake(c, tc net.Conn) {
	if s.Timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(s.Timeout))
	}
	var h2 bool
	var err error
	if t, ok := tc.(*tls.Conn); ok {
		err = t.Handshake()
		h2 = err == nil && t.ConnectionState().NegotiatedProtocol == "h2"
	} else {
		h2, err = s.Peek(tc)
	}
	_ = c.SetDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	closed := s.closed
	s.mu.Unlock()
	if err != nil || closed {
		c.Close()
		s.release(tc)
		return
	}
	to := s.h1l
	if h2 {
		to = s.h2l
	}
	if !to.hand(tc) {
		c.Close()
		s.release(tc)
	}
}

// release counts out a connection no server got.
func (s *SplitServer) release(tc net.Conn) {
	if s.Caps != nil {
		s.Caps.Release(tc)
	}
}

// defaultHandshakeTimeout bounds a handshake when server.read_header_timeout
// is 0: a client that starts a handshake and stalls must not hold its
// connection for good.
const defaultHandshakeTimeout = 10 * time.Second

// HandshakeTimeout bounds a TLS handshake on h1: server.read_header_timeout
// (the handshake comes before the head), else defaultHandshakeTimeout.
func HandshakeTimeout(readHeader time.Duration) time.Duration {
	if readHeader > 0 {
		return readHeader
	}
	return defaultHandshakeTimeout
}

// stop stops accepting and closes the connections still handshaking.
func (s *SplitServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.outer != nil {
		s.outer.Close()
		s.h1l.Close()
		s.h2l.Close()
	}
	for c := range s.pending {
		c.Close()
	}
}

// Shutdown stops accepting and lets both servers finish their requests.
func (s *SplitServer) Shutdown(ctx context.Context) error {
	s.stop()
	err := errors.Join(s.H1.Shutdown(ctx), s.H2.Shutdown(ctx))
	s.served.Wait()
	return err
}

// Close closes every connection at once.
func (s *SplitServer) Close() error {
	s.stop()
	err := errors.Join(s.H1.Close(), s.H2.Close())
	s.served.Wait()
	return err
}

// connListener hands connections accepted elsewhere to a server's Serve.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives c to the server, false once the listener is closed.
func (l *connListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next connection handed over, or net.ErrClosed.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and hand return at once.
func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the outer listener's address.
func (l *connListener) Addr() net.Addr { return l.addr }
