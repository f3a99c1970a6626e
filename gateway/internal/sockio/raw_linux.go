package sockio

import (
	"syscall"
	"unsafe"
)

// Supported: New returns a Conn for sockets, and Read, Write and Idle work.
const Supported = true

// sysRead and sysWrite are read(2) and write(2) without entersyscall.
// Under -race they tell the detector what the kernel read and wrote
// (race.go).
func sysRead(fd uintptr, p []byte) (int, error) {
	n, err := rawIO(syscall.SYS_READ, fd, p)
	raceReadDone(p, n)
	return n, err
}

func sysWrite(fd uintptr, p []byte) (int, error) {
	raceWriteStart()
	n, err := rawIO(syscall.SYS_WRITE, fd, p)
	raceWriteDone(p, n)
	return n, err
}

// rawIO is read(2) or write(2) as a raw call, retried when interrupted.
func rawIO(trap, fd uintptr, p []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// Idle reports whether a socket has no bytes to read and no end of stream
// pending: a non-blocking peek that finds nothing.
func Idle(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return e == syscall.EAGAIN || e == syscall.EWOULDBLOCK
}
