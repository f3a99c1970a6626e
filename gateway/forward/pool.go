package forward

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/internal/sockio"
)

// pool holds latch's own HTTP/1.1 connections to backends, the ones the
// fast path (fast.go) uses: per backend address, a stack of idle
// connections, most recently used on top, closed after IdleConnTimeout.
// The standard Transport (std) serves ReverseProxy, the other path, with
// the same limits.
type pool struct {
	std           *http.Transport
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdlePer    int
	maxIdle       int64
	bufSize       int
	maxHead       int              // a response head's limit, and a trailer section's
	now           func() time.Time // tests replace it

	idle  atomic.Int64 // idle connections, all hosts
	pools sync.Map     // host:port → *hostPool
}

func newPool(cfg config.Transport) *pool {
	std := newTransport(cfg)
	return &pool{
		std:           std,
		dial:          dialer(cfg),
		headerTimeout: cfg.ResponseHeaderTimeout.Get(),
		idleTimeout:   cfg.IdleConnTimeout.Get(),
		maxIdlePer:    cfg.MaxIdleConnsPerHost.Get(),
		maxIdle:       int64(cfg.MaxIdleConns.Get()),
		bufSize:       std.ReadBufferSize,
		maxHead:       cfg.MaxResponseHeaderBytes.Get(),
		now:           time.Now,
	}
}

// closeIdleConnections closes every idle connection, both paths.
func (u *pool) closeIdleConnections() {
	u.pools.Range(func(_, v any) bool {
		v.(*hostPool).closeIdle()
		return true
	})
	u.std.CloseIdleConnections()
}

// conn returns an idle connection to host, or dials one.
func (u *pool) conn(ctx context.Context, host string, fresh bool) (*upConn, error) {
	p := u.forHost(host)
	if !fresh {
		if c := p.get(u.now()); c != nil {
			return c, nil
		}
	}
	nc, err := u.dial(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	c := &upConn{Conn: nc, pool: p}
	var rw io.ReadWriter = nc
	if sio := sockio.New(nc); sio != nil {
		rw, c.sio = sio, sio
		c.raw, _ = nc.(syscall.Conn).SyscallConn()
		c.peek = func(fd uintptr) bool {
			c.peekIdle = sockio.Idle(fd)
			return true // never wait
		}
		c.sendFn = c.sendOnce
	}
	c.br = bufio.NewReaderSize(rw, u.bufSize)
	c.bw = bufio.NewWriterSize((*upSink)(c), u.bufSize)
	c.cancel = func() { _ = c.SetDeadline(aLongTimeAgo) }
	p.inUse.Add(1)
	return c, nil
}

func (u *pool) forHost(host string) *hostPool {
	if p, ok := u.pools.Load(host); ok {
		return p.(*hostPool)
	}
	p, _ := u.pools.LoadOrStore(host, &hostPool{u: u, host: host})
	return p.(*hostPool)
}

// hostPool holds one backend's idle connections, most recently used last.
type hostPool struct {
	u     *pool
	host  string
	inUse atomic.Int64 // connections checked out
	mu    sync.Mutex
	idle  []*upConn
	sweep *time.Timer
}

// get pops the most recently used connection that has not idled too long.
// Whether the backend closed it or sent bytes nobody asked for is checked
// when a request is sent on it (upConn.send, idleClean).
func (p *hostPool) get(now time.Time) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.u.idle.Add(-1)
		if p.u.idleTimeout > 0 && now.Sub(c.idleAt) > p.u.idleTimeout {
			// The youngest is too old: so are the rest.
			c.Close()
			p.closeIdleLocked()
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		p.inUse.Add(1)
		c.reused = true
		return c
	}
}

// put returns a checked-out c to the pool, or closes it when the pool is
// full.
func (p *hostPool) put(c *upConn) {
	u := p.u
	p.inUse.Add(-1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= u.maxIdlePer || (u.maxIdle > 0 && u.idle.Load() >= u.maxIdle) {
		c.Close()
		return
	}
	c.idleAt = u.now()
	c.shed()
	p.idle = append(p.idle, c)
	u.idle.Add(1)
	if u.idleTimeout > 0 && p.sweep == nil {
		p.sweep = time.AfterFunc(u.idleTimeout, p.expire)
	}
}

// expire closes connections idle for longer than the idle timeout, so a
// backend that no longer gets requests does not keep them forever.
func (p *hostPool) expire() {
	u := p.u
	p.mu.Lock()
	defer p.mu.Unlock()
	now := u.now()
	n := 0
	for _, c := range p.idle {
		if now.Sub(c.idleAt) > u.idleTimeout {
			c.Close()
			u.idle.Add(-1)
			continue
		}
		p.idle[n] = c
		n++
	}
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	p.sweep = nil
	if n > 0 {
		p.sweep = time.AfterFunc(u.idleTimeout-now.Sub(p.idle[0].idleAt)+time.Millisecond, p.expire)
		return
	}
	if p.inUse.Load() == 0 {
		// Unused for a whole timeout: forget the address, so backends that
		// come and go do not pile up pools. (A request that took this pool
		// from the map just now still works: the pool's next put schedules
		// its own sweep.)
		u.pools.CompareAndDelete(p.host, p)
	}
}

func (p *hostPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeIdleLocked()
}

func (p *hostPool) closeIdleLocked() {
	for _, c := range p.idle {
		c.Close()
		p.u.idle.Add(-1)
	}
	clear(p.idle)
	p.idle = p.idle[:0]
}

// upConn is one HTTP/1.1 connection to a backend, with the scratch space
// of the exchange in progress (one at a time).
type upConn struct {
	net.Conn
	pool   *hostPool
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool   // taken from the pool: the backend may have closed it
	cancel func() // unblocks I/O when the request is cancelled

	sio      *sockio.Conn          // raw reads and writes; nil when not a socket
	raw      syscall.RawConn       // nil when not a socket
	peek     func(fd uintptr) bool // for raw.Read: sets peekIdle
	peekIdle bool

	// A request without a body is gathered in out (capture) and sent by
	// send, in one poller registration with the wait for its answer.
	out     []byte
	capture bool
	sendFn  func(fd uintptr) bool // sendOnce, for raw.Read
	sendSt  sendState
	sendN   int   // bytes of out written by sendOnce
	sendErr error // sendOnce's write error

	// What the exchange in progress did, for the resend rules (fast.go,
	// outcome.go): bytes of the request written to the socket, and whether
	// a byte of the answer arrived.
	wrote   int64
	replied bool

	head    []byte  // the response head being read
	fields  []field // its header fields
	http10  bool
	kind    bodyKind
	length  int64
	keep    bool // the connection can carry another request after this one
	limited io.LimitedReader
	pending int      // a final status read while awaiting 100 Continue (upload.go)
	scratch [20]byte // formatting numbers
}

// watch makes a cancellation of ctx (client gone, route timeout) unblock
// the connection's reads and writes. The returned stop reports false when
// that already happened: the connection is then unusable.
func (c *upConn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, c.cancel)
}

// setDeadline sets c's deadline unless ctx was cancelled, whose
// cancellation must keep the connection's I/O failing (watch).
func (c *upConn) setDeadline(ctx context.Context, t time.Time) {
	_ = c.SetDeadline(t)
	if ctx.Err() != nil {
		_ = c.SetDeadline(aLongTimeAgo) // a cancellation raced with setting the deadline
	}
}

// staleError is a failure before any byte of a response arrived: the
// backend closed or reset the connection. Whether the request may go again
// depends on how much of it was written (upConn.wrote) and on its method
// (resendable).
type staleError struct{ err error }

func (e staleError) Error() string { return e.err.Error() }
func (e staleError) Unwrap() error { return e.err }

// aLongTimeAgo is a deadline that makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// errHeaderTimeout names ResponseHeaderTimeout in errors.
var errHeaderTimeout = errors.New("timeout awaiting response headers")

// keptScratch bounds the scratch an idle connection keeps for its next
// exchange (the request head gathered in out, the response head in head).
const keptScratch = 8 << 10

// shed drops scratch grown past keptScratch by a big head. Issue 23: a
// client sending 64 KB heads left every pooled backend connection holding
// its copy, idle, for as long as the connection lived.
func (c *upConn) shed() {
	if cap(c.out) > keptScratch {
		c.out = nil
	}
	if cap(c.head) > keptScratch {
		c.head = nil
	}
}

// close closes a checked-out connection.
func (c *upConn) close() {
	c.pool.inUse.Add(-1)
	_ = c.Close()
}

// upSink is where c.bw writes: the socket, or c.out while capture is set.
type upSink upConn

func (s *upSink) Write(p []byte) (int, error) {
	c := (*upConn)(s)
	if c.capture {
		c.out = append(c.out, p...)
		return len(p), nil
	}
	var n int
	var err error
	if c.sio != nil {
		n, err = c.sio.Write(p)
	} else {
		n, err = c.Conn.Write(p)
	}
	c.wrote += int64(n)
	return n, err
}

// errIdleDirty is a pooled connection found closed by the backend, or
// holding bytes nobody asked for (a late body, a 408 before closing), when
// a request was about to go out on it: they must not be read as that
// request's response. The request goes on another connection.
var errIdleDirty = errors.New("idle backend connection closed or not clean")

type sendState uint8

const (
	sendNone  sendState = iota // sendOnce not called yet
	sendSent                   // written (sendN bytes), waiting for the answer
	sendDirty                  // a reused connection was not clean: nothing written
)

// send writes the request head gathered in c.out and waits until the
// backend's answer can be read, under one registration with the poller:
// one system call to check a reused connection is clean, one to write, and
// the next read finds the answer there. Writing first and then reading
// costs a read that finds nothing (the poller forgets readiness seen before
// a read starts, so a read always tries the socket first). A deadline or
// cancellation while waiting is left for readHead, which meets it again.
func (c *upConn) send() error {
	c.sendSt, c.sendN, c.sendErr = sendNone, 0, nil
	err := c.raw.Read(c.sendFn)
	switch {
	case c.sendSt == sendDirty:
		return errIdleDirty
	case c.sendErr != nil:
		return staleError{c.sendErr} // nothing was answered: see forwardFast
	case c.sendSt == sendNone: // a deadline passed, or the connection closed
		return unsent(err)
	case c.sendN < len(c.out):
		// The socket buffer was full: the rest through the poller, straight
		// to the socket. (Issue 22: through upSink, while writeRequest still
		// captured, the rest was appended to c.out and never sent; the
		// request hung until the header timeout on any real link.)
		n, err := c.sio.Write(c.out[c.sendN:])
		c.wrote += int64(n)
		if err != nil {
			return unsent(err)
		}
	}
	return nil
}

// unsent is a failure to send a request head: a timeout as it is (the
// request must not be sent again), anything else stale (the backend closed
// the connection before answering: see forwardFast).
func unsent(err error) error {
	if timeout(err) {
		return err
	}
	return staleError{err}
}

// sendOnce is send's poller callback: the first call checks and writes,
// the next (the socket turned readable) ends the wait.
func (c *upConn) sendOnce(fd uintptr) bool {
	if c.sendSt != sendNone {
		return true
	}
	if c.reused && !sockio.Idle(fd) {
		c.sendSt = sendDirty
		return true
	}
	c.sendSt = sendSent
	n, err := sockio.Write(fd, c.out)
	if err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK {
		c.sendErr = err
		return true
	}
	c.sendN = n
	c.wrote += int64(n)
	return n < len(c.out) // true: send writes the rest; false: wait for the answer
}

// canSend reports whether send can write on c (a socket, on a platform
// sockio supports).
func (c *upConn) canSend() bool { return c.sio != nil }

// sends reports whether x's request goes out through send (which checks
// a reused connection itself) rather than after idleClean.
func (c *upConn) sends(x *exchange) bool { return x.body == nil && c.canSend() }

// idleClean reports whether an idle connection has nothing to read and is
// still open, by peeking at the socket without blocking (one system call
// per reuse; net/http's Transport instead keeps a read pending on every
// idle connection). Connections that are not sockets count as clean.
func (c *upConn) idleClean() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.peekIdle = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekIdle
}

// dialer dials backends with the configured timeout; its errors are typed
// (dialError: nothing was sent).
func dialer(cfg config.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: cfg.DialTimeout.Get(), KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, dialError{err}
		}
		return c, nil
	}
}

// newTransport is the transport of the ReverseProxy path (and of active
// health checks): keep-alive pools sized for many backends, bounded dials
// and header waits, dial errors typed, connections that count what they
// read (readCounter: the resend rules).
func newTransport(cfg config.Transport) *http.Transport {
	dial := dialer(cfg)
	return &http.Transport{
		Proxy: nil, // never an environment proxy between latch and its backends
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &readCounter{Conn: c}, nil
		},
		MaxIdleConns:          cfg.MaxIdleConns.Get(),
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost.Get(),
		IdleConnTimeout:       cfg.IdleConnTimeout.Get(),
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout.Get(),
		ExpectContinueTimeout: time.Second,
		// The same limit as the fast path's (issue 17: about 10 MB
		// otherwise).
		MaxResponseHeaderBytes: int64(cfg.MaxResponseHeaderBytes.Get()),
		// Backends are reached over plain HTTP/1.1 on a private network;
		// compression is the client's business, not the hop's.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
}

// copyBuffers are the 32 KiB buffers both paths copy bodies with. A
// channel, not a sync.Pool: putting a slice back in a sync.Pool allocates.
var copyBuffers = &bufferPool{free: make(chan []byte, 1024), size: 32 << 10}

// firstBuffers hold the first bytes of request bodies (replayBody.first).
var firstBuffers = &bufferPool{free: make(chan []byte, 1024), size: firstSize}

type bufferPool struct {
	free chan []byte
	size int
}

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, b.size)
	}
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < b.size {
		return
	}
	select {
	case b.free <- buf[:b.size]:
	default:
	}
}
