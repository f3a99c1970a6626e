//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/latchgw/latch/gateway/internal/sockio"
)

// acceptRetry are the errors after which Serve waits and accepts again.
// net/http retries what its Temporary says (EMFILE, ENFILE, ECONNABORTED,
// ECONNRESET, EINTR and timeouts); ENOBUFS and ENOMEM pass too, as memory
// is freed, and ending the server over any of them ends latch. Linux's
// accept(2) also hands on a connection's pending network errors, which
// it says to treat as EAGAIN: the rest of the list.
var acceptRetry = []error{
	syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
	syscall.ENETDOWN, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EHOSTDOWN,
	syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH,
}

// readIdle waits for the next request's first bytes. On a socket it waits
// in the poller without a buffer and takes one from the pool only once
// bytes are there to read into it: an idle connection holds no buffer.
// Where the server's watcher can take the socket (plain TCP on Linux), the
// wait in the poller lasts only parkAfter: park reports that it passed
// with nothing read, and the caller parks the connection in the watcher,
// ending its goroutine.
func (c *conn) readIdle() (park bool, err error) {
	c.r, c.w, c.rerr = 0, 0, nil
	if c.raw == nil {
		setDeadline(c.rwc, c.idleUntil)
		return false, c.fill(bufSize)
	}
	if c.readFn == nil {
		c.readFn = c.tryRead // one closure per connection, not per request
	}
	c.idleN, c.idleErr = 0, nil
	deadline := c.idleUntil
	if c.srv.watcher(true).canPark() {
		if p := time.Now().Add(c.srv.parkAfter()); deadline.IsZero() || p.Before(deadline) {
			deadline, park = p, true
		}
	}
	if park && c.srv.parkAfter() == 0 {
		// Park at once unless bytes are there already.
		err = c.raw.Control(func(fd uintptr) { park = !c.tryRead(fd) })
	} else {
		setDeadline(c.rwc, deadline)
		err = c.raw.Read(c.readFn)
		if park && errors.Is(err, os.ErrDeadlineExceeded) {
			return true, nil
		}
		park = false
	}
	switch {
	case err != nil:
		return false, err // the deadline passed or the connection closed
	case park:
		return true, nil
	case c.idleErr != nil:
		return false, c.idleErr
	case c.idleN <= 0:
		return false, io.EOF
	}
	if deadline != c.idleUntil && c.srv.ReadHeaderTimeout == 0 && c.srv.ReadTimeout == 0 {
		// The park's deadline is not the request's to keep.
		setDeadline(c.rwc, c.idleUntil)
	}
	c.w = c.idleN
	return false, nil
}

func setDeadline(c net.Conn, t time.Time) { _ = c.SetReadDeadline(t) }

// tryRead reads what the socket has into a pooled buffer; false (nothing
// yet) makes the poller wait for readability and call it again.
func (c *conn) tryRead(fd uintptr) bool {
	buf := getBuf()
	n, err := sockio.Read(fd, buf)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		putBuf(buf)
		return false
	}
	c.buf, c.idleN, c.idleErr = buf, n, err
	return true
}
