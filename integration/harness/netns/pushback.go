package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The knobs of a network that pushes back. Loopback takes every write
// whole and its peers read at once; on veth, behind a small socket buffer,
// a rate-limited link or a peer that reads slowly, writes come back short
// (or EAGAIN) and reads return pieces. These make that happen on purpose.

// Buffers sets the host's TCP buffers (the namespaced sysctls
// net.ipv4.tcp_rmem and tcp_wmem): every socket made in the host starts
// with rcv and snd bytes and does not autotune past them.
func (host *Host) Buffers(t testing.TB, rcv, snd int) {
	t.Helper()
	host.run(t, "sysctl", "-q", "-w",
		fmt.Sprintf("net.ipv4.tcp_rmem=4096 %d %d", rcv, rcv),
		fmt.Sprintf("net.ipv4.tcp_wmem=4096 %d %d", snd, snd))
}

// Limit shapes the host's link both ways with a token bucket filter (tc
// tbf): rate is tc's syntax ("100mbit"). Packets held longer than 100 ms
// are dropped, as a congested link drops them, and TCP resends them.
// tbf is there on these kernels (netem is not); check with
// `tc qdisc add dev X root tbf rate 1mbit burst 32kb latency 100ms`.
func (h *Hosts) Limit(t testing.TB, host *Host, rate string) {
	t.Helper()
	tbf := []string{"root", "tbf", "rate", rate, "burst", "64kb", "latency", "100ms"}
	host.run(t, append([]string{"tc", "qdisc", "add", "dev", "eth0"}, tbf...)...) // from the host
	run(t, append([]string{"tc", "qdisc", "add", "dev", host.link}, tbf...)...)   // to the host
}

// SockOpts are per-socket buffer sizes (SO_RCVBUF, SO_SNDBUF; 0 leaves
// the host's default). The kernel doubles what it is given and has a
// floor of its own (about 2 KiB received, 4.5 KiB sent).
type SockOpts struct {
	RcvBuf, SndBuf int
}

func (o SockOpts) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if o.RcvBuf > 0 {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RcvBuf)
		}
		if o.SndBuf > 0 && serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, o.SndBuf)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Listen opens a TCP listener on the host at port (0: any). A socket
// stays in the namespace it was made in, so the listener and the
// connections it accepts are the host's while the test's own goroutines
// serve them: no second process is needed. Accepted connections inherit
// o's buffer sizes. It is closed when the test ends.
func (host *Host) Listen(t testing.TB, port int, o SockOpts) net.Listener {
	t.Helper()
	return Listen(t, host, net.JoinHostPort(host.IP, strconv.Itoa(port)), o)
}

// Listen opens a TCP listener on addr in host's namespace (nil: the
// test's own, e.g. on an address of Hosts.AddAddr), as Host.Listen does.
func Listen(t testing.TB, host *Host, addr string, o SockOpts) net.Listener {
	t.Helper()
	var l net.Listener
	err := host.do(func() (err error) {
		lc := net.ListenConfig{Control: o.control}
		l, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Dial connects from the host to addr with o's buffer sizes; a nil host
// is the root namespace. (Hosts reach each other only through the root
// namespace: where Docker runs, its iptables FORWARD policy drops what the
// bridge forwards between them.)
func (host *Host) Dial(ctx context.Context, addr string, o SockOpts) (net.Conn, error) {
	var c net.Conn
	err := host.do(func() (err error) {
		d := net.Dialer{Control: o.control}
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// DialContext is Dial as http.Transport's DialContext wants it: an HTTP
// client whose connections start on the host.
func (host *Host) DialContext(o SockOpts) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) { return host.Dial(ctx, addr, o) }
}

// do runs fn on a thread of its own that has entered the host's network
// namespace; sockets fn makes belong to the host. The thread is never
// given back to the Go scheduler: the goroutine ends while locked to it,
// and the runtime then ends the thread, so no other goroutine ever runs in
// the host's namespace by chance.
func (host *Host) do(fn func() error) error {
	if host == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + host.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", host.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
