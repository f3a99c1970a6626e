//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"io"
	"syscall"
)

var errTooManyFiles error = syscall.EMFILE

// readIdle waits for the next request's first bytes. On a socket it waits
// in the poller without a buffer and takes one from the pool only once
// bytes are there to read into it: an idle connection holds no buffer.
func (c *conn) readIdle() error {
	c.r, c.w, c.rerr = 0, 0, nil
	if c.raw == nil {
		return c.fill(bufSize)
	}
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		buf := getBuf()
		for {
			n, rerr = syscall.Read(int(fd), buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK {
			putBuf(buf)
			return false // wait for readability, then try again
		}
		c.buf = buf
		return true
	})
	if err != nil {
		return err // the deadline passed or the connection closed
	}
	if rerr != nil {
		return rerr
	}
	if n <= 0 {
		return io.EOF
	}
	c.w = n
	return nil
}
