//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package forward

import "syscall"

// socketIdle reports whether a socket has no bytes to read and no end of
// stream pending: a non-blocking peek that finds nothing.
func socketIdle(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n <= 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
}
