package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
	"github.com/latchgw/latch/gateway/internal/sockio"
)

// Connection states, for Shutdown: only an idle connection may be closed
// under a client's feet.
// A parked connection is idle without a goroutine (park_linux.go): whoever
// moves it out of stateParked owns it.
const (
	stateActive int32 = iota
	stateIdle
	stateClosed
	stateParked
)

const bufSize = 4 << 10

// bufs holds the read and write buffers of requests in flight, as array
// pointers: putting one back allocates nothing.
var bufs = sync.Pool{New: func() any { return new([bufSize]byte) }}

func getBuf() []byte { return bufs.Get().(*[bufSize]byte)[:] }

func putBuf(b []byte) {
	if cap(b) == bufSize {
		bufs.Put((*[bufSize]byte)(b[:bufSize]))
	}
}

// conn is one client connection. Between requests it holds no buffer.
type conn struct {
	srv   *Server
	rwc   net.Conn
	raw   syscall.RawConn // nil: the listener's conns are not sockets (TLS, pipes)
	io    io.ReadWriter   // rwc, or its raw reads and writes (sockio) on a socket
	state atomic.Int32

	buf    []byte // read buffer, while a request is in flight
	r, w   int    // buf[r:w] is read but not consumed
	rerr   error  // the read error after buf[r:w], if any
	scan   int    // how far the head was scanned, and its line-break state
	scanSt int

	req        http.Request
	tmpl       http.Request // empty but for the connection's context
	remote     string
	url        url.URL
	hdr        http.Header
	strs       []string
	body       body
	resp       response
	lastMethod string
	pending    int // bytes read ahead when the request began
	hijacked   bool

	sock    syscall.RawConn    // the socket (under TLS too), for the watcher (nil: none)
	watchID uint64             // the watcher's key for it (0: not yet)
	cancel  context.CancelFunc // ends the connection's (and request's) context

	readFn  func(fd uintptr) bool // readIdle's poller callback
	idleN   int
	idleErr error

	first     bool      // no request read yet
	resumed   bool      // run was started by the watcher: keep idleUntil
	idleUntil time.Time // when the idle wait times out (zero: never)
	slot      wheelSlot // where the watcher keeps it while parked
	grown     int       // bytes reserved in srv.headMem: what buf grew past bufSize by, or what it had when shrink gave it up
}

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, io: rwc, hdr: http.Header{}, remote: rwc.RemoteAddr().String()}
	if sio := sockio.New(rwc); sio != nil {
		c.io = sio
	}
	if sc, ok := rwc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw, c.sock = raw, raw
		}
	} else if tc, ok := rwc.(*tls.Conn); ok {
		// Reads go through TLS (no raw reads), but the socket under it
		// still tells the watcher when the client hangs up.
		if sc, ok := tc.NetConn().(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				c.sock = raw
			}
		}
	}
	c.body.c, c.resp.c = c, c
	c.state.Store(stateIdle)
	return c
}

func (c *conn) serve(base context.Context) {
	ctx, cancel := context.WithCancel(base)
	c.cancel = cancel
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.rwc.LocalAddr())
	// One Request value carrying the connection's context: copied over
	// the connection's request to reset it (http.Request's context can
	// only be set by WithContext, which allocates).
	c.tmpl = *(&http.Request{}).WithContext(ctx)
	s := c.srv
	if tc, ok := c.rwc.(*tls.Conn); ok {
		// A TLS listener's connection: finish its handshake (a no-op when
		// done already) and tell handlers the request came over TLS.
		if s.ReadHeaderTimeout > 0 {
			_ = c.rwc.SetDeadline(time.Now().Add(s.ReadHeaderTimeout))
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			c.close()
			return
		}
		_ = c.rwc.SetWriteDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tmpl.TLS = &st
	}
	c.first = true
	c.run()
}

// run serves the connection's requests until it closes, or until it has
// been idle long enough to park: then it waits in the server's watcher
// without this goroutine, and the watcher starts run again (resumed set)
// when the client sends its next bytes.
func (c *conn) run() {
	s := c.srv
	parked := false
	defer func() {
		if !parked {
			c.close()
		}
	}()
	for {
		if c.r == c.w {
			// Wait for the next request's first bytes without a buffer.
			c.release()
			if !c.resumed {
				wait := s.IdleTimeout
				if c.first || wait == 0 {
					wait = s.ReadTimeout
				}
				if c.first && s.ReadHeaderTimeout > 0 {
					wait = s.ReadHeaderTimeout
				}
				c.idleUntil = time.Time{}
				if wait > 0 {
					c.idleUntil = time.Now().Add(wait)
				}
			}
			c.resumed = false
			c.state.Store(stateIdle)
			if s.closing.Load() {
				return
			}
			if s.testHookIdle != nil {
				s.testHookIdle(c)
			}
			park, err := c.readIdle()
			if park {
				// Parked for a while, maybe long: drop the maps and slice
				// kept for the next request too (made again on resume).
				c.hdr, c.strs, c.resp.header = nil, nil, nil
				parked = s.watcher(false).park(c)
				if !parked {
					c.state.CompareAndSwap(stateIdle, stateClosed)
				}
				return // parked, or the server is closing
			}
			if !c.state.CompareAndSwap(stateIdle, stateActive) || err != nil {
				return // closed by Shutdown, or the client left or idled out
			}
		}
		c.first = false
		start := time.Now()
		if s.ReadHeaderTimeout > 0 {
			_ = c.rwc.SetReadDeadline(start.Add(s.ReadHeaderTimeout))
		} else if s.ReadTimeout > 0 {
			_ = c.rwc.SetReadDeadline(start.Add(s.ReadTimeout))
		}
		if !c.serveOne(start) {
			return
		}
	}
}

// resume serves a parked connection whose client sent bytes (or hung
// up): the watcher calls it on a new goroutine, the connection's state
// already taken from parked to idle.
func (c *conn) resume() {
	c.resumed = true
	c.srv.watcher(false).unpark(c)
	c.run()
}

// close ends the connection: its context, its watch, its socket, and the
// server's count of it.
func (c *conn) close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.srv.watcher(false).forget(c)
	if !c.hijacked {
		c.rwc.Close()
	}
	c.release()
	c.returnGrown() // a grown buffer still holding unread bytes goes with the connection
	c.srv.trackConn(c, false)
	if h := c.srv.ConnState; h != nil {
		if c.hijacked {
			h(c.rwc, http.StateHijacked)
		} else {
			h(c.rwc, http.StateClosed)
		}
	}
}

// serveOne reads one request and answers it; false: close the connection.
func (c *conn) serveOne(start time.Time) bool {
	s := c.srv
	c.pending = c.w - c.r
	if c.lastMethod == "POST" {
		// RFC 7230 §3.5 tolerance for old buggy clients, as net/http: up
		// to 4 CR or LF bytes after a POST body are skipped.
		for i := 0; i < 4 && c.r < c.w && (c.buf[c.r] == '\r' || c.buf[c.r] == '\n'); i++ {
			c.r++
		}
		if c.r == c.w {
			return true
		}
	}
	head, err := c.readHead()
	if err != nil {
		c.reject(err)
		return false
	}
	c.shrink()
	c.resetRequest()
	f, err := parseHead(head, &c.req, &c.strs, c.srv.maxHeaderFields())
	if err != nil {
		c.reject(err)
		return false
	}
	c.lastMethod = c.req.Method
	if s.ReadTimeout > 0 {
		_ = c.rwc.SetReadDeadline(start.Add(s.ReadTimeout))
	} else if s.ReadHeaderTimeout > 0 {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	if s.WriteTimeout > 0 {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	}
	c.req.ContentLength = f.length
	c.body.reset(f)
	if f.length != 0 {
		c.req.Body = &c.body
	} else {
		c.req.Body = http.NoBody
	}
	c.resp.reset(&c.req, f)
	// A client that hangs up while the handler runs cancels its context
	// (the proxy then drops the backend request).
	s.watcher(c.sock != nil).arm(c)
	if c.serveHandler() {
		return false // panicked: the response is cut, close
	}
	if c.hijacked {
		return false
	}
	keep := c.resp.finish()
	if keep && !c.body.finish(c.resp.wroteContinue || !f.expect) {
		keep = false
	}
	return keep && !s.closing.Load()
}

// serveHandler runs the handler and reports whether it panicked.
func (c *conn) serveHandler() (panicked bool) {
	if c.req.RequestURI == "*" && c.req.Method == "OPTIONS" {
		// Answered by the server, as net/http's globalOptionsHandler.
		c.resp.Header().Set("Content-Length", "0")
		c.resp.WriteHeader(http.StatusOK)
		return false
	}
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			if v != http.ErrAbortHandler {
				c.srv.log().Error("h1: panic serving", "remote", c.rwc.RemoteAddr().String(), "panic", v)
			}
		}
	}()
	c.srv.Handler.ServeHTTP(&c.resp, &c.req)
	return false
}

// resetRequest readies the connection's request for the next one.
func (c *conn) resetRequest() {
	if c.hdr == nil {
		c.hdr = http.Header{}
	}
	clear(c.hdr)
	c.url = url.URL{}
	c.req = c.tmpl
	c.req.URL, c.req.Header, c.req.RemoteAddr = &c.url, c.hdr, c.remote
}

// reject answers a request refused before the handler, as net/http does.
func (c *conn) reject(err error) {
	if h := c.srv.testHookReject; h != nil {
		h(err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		return // the client left or timed out: nothing to say
	}
	text := http.StatusText(pe.Status)
	proto := "HTTP/1.1 "
	if pe.Kind == KindExpect && c.req.ProtoMinor == 0 {
		proto = "HTTP/1.0 " // net/http answers this one in the request's version
	}
	msg := proto + itoa(pe.Status) + " " + text + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
		itoa(pe.Status) + " " + text
	if pe.Status == http.StatusBadRequest {
		msg += ": " + pe.Detail
	}
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.rwc, msg)
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok { // *net.TCPConn, *tls.Conn
		// Let the client read the answer before the close resets the
		// connection over its unread bytes (net/http's closeWriteAndWait).
		_ = tc.CloseWrite()
		time.Sleep(50 * time.Millisecond)
	}
}

// readHead reads until the head is complete and returns it as a string
// (the one allocation all the request's strings share), consuming it.
func (c *conn) readHead() (string, error) {
	max := c.srv.maxHeaderBytes()
	c.scan, c.scanSt = c.r, 0
	for {
		end, next, st, err := scanHead(c.buf[:c.w], c.scan, c.scanSt)
		if err != nil {
			return "", err
		}
		if end > 0 {
			head := string(c.buf[c.r:end])
			c.r = end
			return head, nil
		}
		c.scan, c.scanSt = next, st
		if c.w-c.r >= max {
			return "", tooLarge(c.buf[c.r:c.w])
		}
		if err := c.fill(max); err != nil {
			if err == io.EOF && c.w > c.r && (c.lastMethod == "" || c.pending >= 4) {
				// Cut short by the client's end of stream: net/http answers
				// 400 (it takes the end as the end of a line), so do we;
				// except after a first request, when it waits for 4 bytes
				// before it reads one.
				return "", bad(KindTruncated, "request cut short")
			}
			if err == errHeadMemory {
				return "", &ParseError{Kind: KindBusy, Status: http.StatusServiceUnavailable, Detail: "too many large request heads in flight"}
			}
			return "", err // the client left or timed out: no answer
		}
	}
}

// tooLarge is the answer to a head over MaxHeaderBytes: 431 when its
// fields are too many, but a request line that alone is too long is a
// malformed one (a 100 KB method: 400), or a target too long to take
// (414, RFC 9112 §3).
func tooLarge(head []byte) *ParseError {
	if bytes.Contains(head, crlf) {
		return &ParseError{Kind: KindTooLarge, Status: http.StatusRequestHeaderFieldsTooLarge, Detail: "request head too large"}
	}
	if sp := bytes.IndexByte(head, ' '); sp > 0 && httpgrammar.IsToken(string(head[:sp])) {
		return &ParseError{Kind: KindTarget, Status: http.StatusRequestURITooLong, Detail: "request target too long"}
	}
	return bad(KindRequestLine, "request line too long")
}

var crlf = []byte("\r\n")

// fill reads more into buf, compacting it or growing it up to limit.
func (c *conn) fill(limit int) error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.buf == nil {
		c.buf = getBuf()
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			n := copy(c.buf, c.buf[c.r:c.w])
			c.scan -= c.r
			c.r, c.w = 0, n
		} else if len(c.buf) < limit+bufSize {
			nb := make([]byte, min(2*len(c.buf), limit+bufSize))
			// Reserve what nb needs beyond what the connection holds
			// reserved already (for a head whose buffer shrink gave up).
			if need := len(nb) - bufSize - c.grown; need > 0 {
				if !c.srv.reserveHead(need) {
					return errHeadMemory
				}
				c.grown += need
			}
			copy(nb, c.buf[:c.w])
			putBuf(c.buf)
			c.buf = nb
		} else {
			return errLineTooLong
		}
	}
	n, err := c.io.Read(c.buf[c.w:])
	c.w += n
	if err != nil {
		c.rerr = err
		if n > 0 {
			return nil
		}
	}
	return err
}

// returnGrown gives back to the server's head memory what the read buffer
// grew by (the buffer itself is dropped).
func (c *conn) returnGrown() {
	if c.grown > 0 {
		c.srv.headMem.Add(-int64(c.grown))
		c.grown = 0
	}
}

// release returns the read buffer to the pool once nothing in it is
// unconsumed. Bytes read ahead (a pipelined request) keep it.
func (c *conn) release() {
	if c.buf != nil && c.r == c.w {
		putBuf(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
		c.returnGrown()
	}
	c.resp.release()
	// Drop what the last request referenced (its head string, mostly).
	clear(c.hdr)
	clear(c.strs)
	c.req, c.url = http.Request{}, url.URL{}
}

// hijack hands the connection over, with the bytes read ahead.
func (c *conn) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c.hijacked = true
	c.srv.watcher(false).forget(c) // the handler owns it now, and may half-close it
	_ = c.rwc.SetDeadline(time.Time{})
	var r io.Reader = c.rwc
	if c.r < c.w {
		r = io.MultiReader(bytes.NewReader(bytes.Clone(c.buf[c.r:c.w])), c.rwc)
		c.r = c.w
	}
	return c.rwc, bufio.NewReadWriter(bufio.NewReader(r), bufio.NewWriter(c.rwc)), nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
