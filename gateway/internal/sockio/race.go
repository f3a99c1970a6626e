//go:build race

package sockio

import (
	"runtime"
	"unsafe"
)

// The race detector cannot see what a raw system call reads or writes in
// Go memory (issue 22: a race on a buffer sockio filled went unreported).
// These tell it, as the syscall package does for its own read and write:
// read(2) writes p[:n], write(2) reads p[:n], and a write to a socket
// happens before a read that may return its bytes (ioSync).

var ioSync int64

func raceReadDone(p []byte, n int) {
	if n > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), n)
		runtime.RaceAcquire(unsafe.Pointer(&ioSync))
	}
}

func raceWriteStart() { runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync)) }

func raceWriteDone(p []byte, n int) {
	if n > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&p[0]), n)
	}
}
