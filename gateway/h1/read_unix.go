//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"io"
	"syscall"

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
func (c *conn) readIdle() error {
	c.r, c.w, c.rerr = 0, 0, nil
	if c.raw == nil {
		return c.fill(bufSize)
	}
	if c.readFn == nil {
		c.readFn = c.tryRead // one closure per connection, not per request
	}
	c.idleN, c.idleErr = 0, nil
	if err := c.raw.Read(c.readFn); err != nil {
		return err // the deadline passed or the connection closed
	}
	if c.idleErr != nil {
		return c.idleErr
	}
	if c.idleN <= 0 {
		return io.EOF
	}
	c.w = c.idleN
	return nil
}

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
