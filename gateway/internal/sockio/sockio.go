// Package sockio reads and writes non-blocking sockets with raw system
// calls, outside the Go scheduler's system-call accounting.
//
// A read or write on a socket that net has made non-blocking never waits:
// it copies what fits and returns, or fails with EAGAIN, and net's poller
// does the waiting. Go still wraps each such call in entersyscall and
// exitsyscall, and when one takes longer than a scheduler tick (a loopback
// write delivers the segment to the receiver on the writer's own time, tens
// of microseconds) the runtime's monitor takes the processor away from it,
// hands it to another thread and keeps polling every 20µs. Under a proxy's
// load that bookkeeping (thread wake-ups, the monitor's sleeps) cost about a
// tenth of latch's CPU. Raw calls skip it: the goroutine keeps its processor
// for the few microseconds the kernel works, as an event loop's thread would.
// Only calls that cannot block go through here; waiting stays with the
// poller (syscall.RawConn).
package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// Read is read(2) on a non-blocking descriptor (without entersyscall
// where the platform allows).
func Read(fd uintptr, p []byte) (int, error) { return read(fd, p) }

// Write is write(2) on a non-blocking descriptor (without entersyscall
// where the platform allows). It may write less than p.
func Write(fd uintptr, p []byte) (int, error) { return write(fd, p) }

// Conn reads and writes through a socket's syscall.RawConn. It honours the
// socket's deadlines (SetDeadline on the net.Conn) as net.Conn does. One
// reader and one writer at a time, as net.Conn allows.
type Conn struct {
	raw syscall.RawConn
	nc  net.Conn // for error messages and deadlines

	rp, wp   []byte
	rn, wn   int
	rerr     error
	werr     error
	rfn, wfn func(fd uintptr) bool
}

// New returns a Conn over nc when nc is a socket on a platform with raw
// calls, or nil.
func New(nc net.Conn) *Conn {
	if !Supported {
		return nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &Conn{raw: raw, nc: nc}
	c.rfn, c.wfn = c.tryRead, c.tryWrite
	return c
}

// Read reads into p as net.Conn.Read does: at least one byte, or an error
// (io.EOF at the end of the stream).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rp, c.rn, c.rerr = p, 0, nil
	err := c.raw.Read(c.rfn)
	c.rp = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case c.rerr != nil:
		return 0, c.opError("read", os.NewSyscallError("read", c.rerr))
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *Conn) tryRead(fd uintptr) bool {
	n, err := read(fd, c.rp)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		return false // the poller waits for bytes
	}
	c.rn, c.rerr = n, err
	return true
}

// Write writes all of p as net.Conn.Write does.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wp, c.wn, c.werr = p, 0, nil
	err := c.raw.Write(c.wfn)
	n := c.wn
	c.wp = nil
	switch {
	case c.werr != nil:
		return n, c.opError("write", os.NewSyscallError("write", c.werr))
	case err != nil:
		return n, c.opError("write", err)
	}
	return n, nil
}

func (c *Conn) tryWrite(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, err := write(fd, c.wp[c.wn:])
		if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
			return false // the poller waits for room
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite // never for a socket; not a reason to spin
		}
		if err != nil {
			c.werr = err
			return true
		}
		c.wn += n
	}
	return true
}

// opError dresses err as net.Conn's own errors are, keeping what
// errors.Is and net.Error see (a deadline's timeout, the errno).
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op // "raw-read" otherwise
		return oe
	}
	return &net.OpError{Op: op, Net: c.nc.LocalAddr().Network(), Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: err}
}
