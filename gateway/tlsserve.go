package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/latchgw/latch/gateway/h1"
)

// TLS on the public listener. With server.implementation net/http,
// net/http serves the TLS listener whole (HTTP/1.1 and, by ALPN, HTTP/2).
// With h1, splitServer completes each handshake and hands the connection by
// its ALPN protocol: h2 to net/http's HTTP/2 server, anything else to h1.
// Either way every request reaches the same handler (Gateway.Handler),
// so HTTP/2 requests get the same session, retry and breaker rules; they
// take the ReverseProxy path (the fast path is HTTP/1.1's).

// challengePrefix is the ACME HTTP-01 challenge path (RFC 8555 §8.3),
// which the redirect listener does not redirect.
const challengePrefix = "/.well-known/acme-challenge/"

// tlsConfig is the public listener's TLS config.
func (g *Gateway) tlsConfig() *tls.Config {
	min := uint16(tls.VersionTLS12)
	if g.c.TLS.MinVersion == "1.3" {
		min = tls.VersionTLS13
	}
	return &tls.Config{
		GetCertificate: g.certificate,
		MinVersion:     min,
		NextProtos:     append([]string{"h2", "http/1.1"}, g.nextProtos...),
		// Cipher suites: Go's defaults. Session tickets (resumption) are on,
		// their keys rotated by crypto/tls.
	}
}

// certificate is the public listener's tls.Config.GetCertificate: the
// Deps.GetCertificate hook (tls.acme: its domains, route hosts and
// challenges) first, then tls.certificates.
func (g *Gateway) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hook := g.getCertificate; hook != nil {
		if c, err := hook(hello); c != nil || err != nil {
			return c, err
		}
	}
	if g.certs == nil {
		return nil, fmt.Errorf("no certificate for %q: not in tls.acme.domains nor a route's host", hello.ServerName)
	}
	return g.certs.getCertificate(hello)
}

// hsts sets Strict-Transport-Security on responses over TLS.
func (g *Gateway) hsts(next http.Handler) http.Handler {
	h := g.c.TLS.HSTS
	v := "max-age=" + strconv.FormatInt(int64(h.MaxAge/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	value := []string{v}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			// Shared by every response: the slice's capacity is 1, so an
			// append by anyone reallocates rather than writing into it.
			w.Header()["Strict-Transport-Security"] = value[:1:1]
		}
		next.ServeHTTP(w, r)
	})
}

// redirectHandler is the plain-HTTP listener's (tls.redirect_listen):
// 308 to the same host, path and query over HTTPS on port (omitted when
// 443), except the ACME challenge path, which challenge serves (404 when
// nil).
func redirectHandler(port string, challenge http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, challengePrefix) {
			if challenge == nil {
				http.NotFound(w, r)
				return
			}
			challenge.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "latch: no Host to redirect to", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 address
		}
		if port != "443" {
			host += ":" + port
		}
		w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// listenerPort is the port redirects name: the public listener's.
func listenerPort(public net.Listener) string {
	_, p, _ := net.SplitHostPort(public.Addr().String())
	return p
}

// tlsHTTP is net/http serving TLS (HTTP/1.1, and HTTP/2 by ALPN) with
// its TLSConfig, on a plain listener (so Run still sees a shared
// listener's type).
type tlsHTTP struct{ *http.Server }

func (s tlsHTTP) Serve(l net.Listener) error { return s.ServeTLS(l, "", "") }

// splitServer serves TLS connections with h1 (HTTP/1.x) and net/http's
// HTTP/2 server (ALPN h2); without conf, plain ones, sorted by their
// first bytes (h2c.go). A connection counts against the caps (conns)
// from accept: through its handshake, then in the server it goes to.
type splitServer struct {
	conf    *tls.Config // nil: h2c
	h1      *h1.Server
	h2      *http.Server
	timeout time.Duration // bounds a handshake (handshakeTimeout)
	conns   *connLimit    // nil: no cap
	log     func(msg string, args ...any)

	mu      sync.Mutex
	closed  bool
	outer   net.Listener
	h1l     *connListener
	h2l     *connListener
	pending map[net.Conn]struct{} // handshaking
	served  sync.WaitGroup        // the two servers' Serve
}

var _ server = (*splitServer)(nil)

// Serve accepts on l until Shutdown or Close.
func (s *splitServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.outer, s.pending = l, map[net.Conn]struct{}{}
	s.h1l, s.h2l = newConnListener(l.Addr()), newConnListener(l.Addr())
	s.mu.Unlock()
	s.served.Go(func() { _ = s.h1.Serve(s.h1l) })
	s.served.Go(func() { _ = s.h2.Serve(s.h2l) })
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
			s.log("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// The servers see tc: counted in as tc, it is counted out when
		// they are done with it.
		tc := s.open(c)
		if s.conns != nil && s.conns.admit(tc) != "" {
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
func (s *splitServer) open(c net.Conn) net.Conn {
	if s.conf == nil {
		return c
	}
	return tls.Server(c, s.conf)
}

// handshake completes tc's TLS handshake over c (or, h2c, waits for its
// first bytes) and hands it to the server of its protocol.
func (s *splitServer) handshake(c, tc net.Conn) {
	if s.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(s.timeout))
	}
	var h2 bool
	var err error
	if t, ok := tc.(*tls.Conn); ok {
		err = t.Handshake()
		h2 = err == nil && t.ConnectionState().NegotiatedProtocol == "h2"
	} else {
		h2, err = peekPreface(tc)
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
func (s *splitServer) release(tc net.Conn) {
	if s.conns != nil {
		s.conns.release(tc)
	}
}

// defaultHandshakeTimeout bounds a handshake when server.read_header_timeout
// is 0: a client that starts a handshake and stalls must not hold its
// connection for good.
const defaultHandshakeTimeout = 10 * time.Second

// handshakeTimeout bounds a TLS handshake on h1: server.read_header_timeout
// (the handshake comes before the head), else defaultHandshakeTimeout.
func handshakeTimeout(readHeader time.Duration) time.Duration {
	if readHeader > 0 {
		return readHeader
	}
	return defaultHandshakeTimeout
}

// stop stops accepting and closes the connections still handshaking.
func (s *splitServer) stop() {
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
func (s *splitServer) Shutdown(ctx context.Context) error {
	s.stop()
	err := errors.Join(s.h1.Shutdown(ctx), s.h2.Shutdown(ctx))
	s.served.Wait()
	return err
}

// Close closes every connection at once.
func (s *splitServer) Close() error {
	s.stop()
	err := errors.Join(s.h1.Close(), s.h2.Close())
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

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
