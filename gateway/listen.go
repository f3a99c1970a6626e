package gateway

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Listen opens the public listener on addr. With reusePort
// (server.reuse_port) the socket has SO_REUSEPORT, so a second latch can
// listen on the same address while this one drains: the zero-downtime
// upgrade. Either kind serves the net/http and the h1 server alike.
func Listen(ctx context.Context, addr string, reusePort bool) (net.Listener, error) {
	if !reusePort {
		return net.Listen("tcp", addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setReusePort(fd) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("SO_REUSEPORT: %w", serr)
		}
		return nil
	}}
	// Plain TCP: Go listens with MPTCP where the kernel has it, and an
	// MPTCP socket refuses socket filters (EOPNOTSUPP), which drain needs.
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &reusePortListener{Listener: l}, nil
}

// reusePortListener is a listener sharing its port with other processes
// (SO_REUSEPORT). The kernel spreads new connections over every socket of
// the group by a hash of their addresses, and a socket that closes resets
// the connections waiting in its accept queue (they were handshaken and
// counted for it). So before Run closes it, drain stops new connections
// from landing here and lets the accept loop empty the queue.
type reusePortListener struct {
	net.Listener
}

// drainPoll is how often drain looks at the accept queue.
const drainPoll = 5 * time.Millisecond

// drain makes the socket refuse new connections without resetting any:
// a filter drops the SYNs that reach it (the client retransmits after
// its SYN timeout, 1s on Linux, and by then this socket is closed and its
// peer in the group takes the connection), while handshakes already
// under way complete. It returns once the accept queue is empty (the
// server keeps accepting meanwhile), or when ctx ends. Where the platform
// has no such filter it returns at once.
func (l *reusePortListener) drain(ctx context.Context) error {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = dropSYNs(fd) }); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("filtering SYNs: %w", ferr)
	}
	// A handshake that was under way when the filter went on completes
	// within a round trip and joins the queue: wait for a few empty
	// readings in a row, not one.
	for empty := 0; empty < 3; {
		var n int
		var qerr error
		if err := rc.Control(func(fd uintptr) { n, qerr = acceptQueue(fd) }); err != nil {
			return err
		}
		if qerr != nil {
			return qerr
		}
		if n == 0 {
			empty++
		} else {
			empty = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
	return nil
}
