//go:build unix

package gateway

import (
	"io"
	"net"
	"syscall"
)

// peekSupported: peekPreface works here.
const peekSupported = true

// peekPreface waits for c's first bytes until they are HTTP/2's client
// preface (h2) or cannot be (HTTP/1), and leaves them unread: it peeks
// (MSG_PEEK) and waits on the poller between peeks, so a client that
// sends the preface a byte at a time costs a peek per byte, not a spin.
// It fails at c's read deadline, or when c ends before it is sorted.
func peekPreface(c net.Conn) (h2 bool, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, errNoPeek
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var buf [len(h2cPreface)]byte
	var perr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false // the poller wakes us when bytes arrive
		case e != nil:
			perr = e
			return true
		case n == 0:
			perr = io.EOF
			return true
		}
		var done bool
		h2, done = prefaceSoFar(buf[:n])
		// Not done: a part of the preface, and the poller wakes us when
		// more bytes arrive (edge-triggered: the peeked ones do not).
		return done
	})
	if err == nil {
		err = perr
	}
	return h2, err
}
