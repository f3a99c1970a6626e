//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package sockio

import "syscall"

// Supported: New returns a Conn for sockets, and Read, Write and Idle work.
// Here through the syscall package's ordinary calls: its raw ones go
// around libc, which these systems do not promise to keep working.
const Supported = true

// sysRead and sysWrite are read(2) and write(2).
func sysRead(fd uintptr, p []byte) (int, error)  { return retried(syscall.Read, fd, p) }
func sysWrite(fd uintptr, p []byte) (int, error) { return retried(syscall.Write, fd, p) }

// retried is call retried when interrupted.
func retried(call func(int, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	for {
		n, err := call(int(fd), p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n < 0 {
			return 0, err
		}
		return n, nil
	}
}

// Idle reports whether a socket has no bytes to read and no end of stream
// pending: a non-blocking peek that finds nothing.
func Idle(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n <= 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
}
