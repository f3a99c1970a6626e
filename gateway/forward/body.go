package forward

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// The client's request body as the attempts see it: read once from the
// client, replayable to another backend while no attempt took more of it
// than the first bytes latch holds, timed out when the client stops
// sending, and waited for before any backend is asked.

// firstSize is how much of a request body is read before a backend is
// picked (replayBody.first): a body this small is held whole, so another
// backend can still get it.
const firstSize = 4 << 10

// replayBody lets a request body go to another backend when no attempt
// read any of it beyond first. Each attempt reads through its own
// generation; deciding to retry (detach) and an attempt's first read past
// first race on one atomic word, so exactly one wins: either the body was
// touched and is not replayed, or the old attempt can read nothing more
// (its transport may still try, from its own goroutine, after the round
// trip returned) and the next attempt gets the whole body. The client's
// body is the server's to close.
type replayBody struct {
	rc     io.ReadCloser
	length int64         // the client's Content-Length (-1: chunked)
	state  atomic.Uint32 // gen<<1 | touched
	// failure is the first error reading the client's body: the client's
	// fault, never the backend's (clientfault.go). Set from whichever
	// goroutine reads the body (ReverseProxy's transport reads it on its
	// own).
	failure atomic.Pointer[clientFault]

	// first holds the body's first bytes, read by awaitFirst before any
	// backend connection is taken; every attempt reads them from here.
	// whole: they are all of it.
	first []byte
	whole bool
	buf   []byte // first's pooled buffer

	// timeout bounds the wait for each read from the client (0: none),
	// through ctl (server.body_timeout). cutOff: reads must end now (the
	// route timed out, or ReverseProxy's attempt ended): a read that sets
	// its own deadline after cut set the past one sets the past one again.
	timeout time.Duration
	ctl     *http.ResponseController
	cutOff  atomic.Bool
}

// cut ends the read of the client's body in progress and every later one:
// they fail as timeouts.
func (b *replayBody) cut() {
	b.cutOff.Store(true)
	_ = b.ctl.SetReadDeadline(aLongTimeAgo)
}

// awaitFirst reads the body's first bytes into b.first, waiting at most
// the body timeout. Issue 23: a client that announced a body and sent
// nothing held a backend connection (on HTTP/2, 250 per connection) for
// as long as it liked. A failure is recorded as the client's.
// keep: the body should stay replayable (a request of
// retry.idempotent_paths): reads go on until the body ends or first is
// full, as a chunked or HTTP/2 body (a gRPC call's) comes in several
// reads, the end in the last.
func (b *replayBody) awaitFirst(keep bool) {
	b.buf = firstBuffers.Get()
	n, err := b.readClient(b.buf)
	for keep && err == nil && n < len(b.buf) && (b.length < 0 || int64(n) < b.length) {
		var more int
		more, err = b.readClient(b.buf[n:])
		n += more
	}
	b.first = b.buf[:n]
	switch {
	case err == io.EOF:
		b.whole = true
	case err != nil:
		b.failure.CompareAndSwap(nil, &clientFault{err: err})
	case b.length >= 0 && int64(n) == b.length:
		b.whole = true // the server's reader ends there: nothing more to wait for
	}
}

// release returns first's buffer; no attempt may read after. A per-read
// deadline left behind (an answer came before the body's end) is cleared,
// so it cannot end the connection's next request; one cut set stays.
func (b *replayBody) release() {
	if b == nil {
		return
	}
	if b.buf != nil {
		firstBuffers.Put(b.buf)
		b.buf, b.first = nil, nil
	}
	if b.timeout > 0 && !b.cutOff.Load() {
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
}

// readClient reads from the client's body under the body timeout.
func (b *replayBody) readClient(p []byte) (int, error) {
	if b.timeout > 0 {
		_ = b.ctl.SetReadDeadline(time.Now().Add(b.timeout))
		if b.cutOff.Load() {
			// cut set the deadline in the past before this read set it
			// again: keep it past.
			_ = b.ctl.SetReadDeadline(aLongTimeAgo)
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF && b.timeout > 0 {
		_ = b.ctl.SetReadDeadline(time.Time{}) // the body is done: the connection's own deadlines rule again
	}
	return n, err
}

// attemptBody is one attempt's view of a replayBody: the outbound
// request's Body. Close ends the attempt's claim.
type attemptBody struct {
	b   *replayBody
	gen uint32
	off int // bytes of b.first read
}

var errBodyDetached = errors.New("request body handed to another attempt")

func (a *attemptBody) Read(p []byte) (int, error) {
	if b := a.b; a.off < len(b.first) || b.whole {
		if b.state.Load()>>1 != a.gen {
			return 0, errBodyDetached
		}
		if a.off == len(b.first) {
			return 0, io.EOF
		}
		n := copy(p, b.first[a.off:])
		a.off += n
		return n, nil
	}
	for {
		s := a.b.state.Load()
		if s>>1 != a.gen {
			return 0, errBodyDetached
		}
		if s&1 == 1 || a.b.state.CompareAndSwap(s, s|1) {
			break
		}
	}
	if cf := a.b.failure.Load(); cf != nil {
		return 0, cf // awaitFirst's read failed
	}
	n, err := a.b.readClient(p)
	if err != nil && err != io.EOF {
		a.b.failure.CompareAndSwap(nil, &clientFault{err: err})
		err = a.b.failure.Load()
	}
	return n, err
}

func (a *attemptBody) Close() error {
	a.b.detach(a.gen)
	return nil
}

// untouched reports whether no attempt read from the body beyond first
// (true without a body).
func (b *replayBody) untouched() bool { return b == nil || b.state.Load()&1 == 0 }

// detach ends generation gen's claim; it reports whether the body is
// untouched, so that another attempt may send it (true without a body).
func (b *replayBody) detach(gen uint32) bool {
	if b == nil {
		return true
	}
	for {
		s := b.state.Load()
		if s&1 == 1 {
			return false
		}
		if s>>1 != gen {
			return true // detached already (by Close), untouched
		}
		if b.state.CompareAndSwap(s, (gen+1)<<1) {
			return true
		}
	}
}
