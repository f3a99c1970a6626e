package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair is a connected TCP pair on loopback: a (wrapped) and its peer b.
func pair(t *testing.T) (*Conn, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	c := New(a)
	if c == nil {
		t.Skip("no raw socket calls on this platform")
	}
	return c, a, b
}

// Reads and writes behave as net.Conn's: whole writes, reads of what is
// there, io.EOF at the end, deadlines as timeouts.
func TestConnReadWrite(t *testing.T) {
	c, a, b := pair(t)

	// A write far larger than the socket buffers: it completes through
	// partial writes and waits for room while the peer reads.
	_ = a.(*net.TCPConn).SetWriteBuffer(4096)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	got := make(chan []byte)
	go func() {
		buf, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		got <- buf
	}()
	if n, err := c.Write(big); err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the peer read other bytes than were written")
	}

	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := io.ReadAtLeast(c, buf, 5); err != nil || string(buf[:n]) != "hello" { // in parts under -tags sockfault
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	// Nothing to read: the read deadline ends the wait as a timeout.
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a timeout", err)
	}
	_ = a.SetReadDeadline(time.Time{})

	b.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
	}
}

// A reset is the errno, dressed as net.Conn dresses it.
func TestConnReset(t *testing.T) {
	c, _, b := pair(t)
	_ = b.(*net.TCPConn).SetLinger(0)
	b.Close() // RST
	_, err := c.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset = %v; want a read OpError wrapping ECONNRESET", err)
	}
}

// Idle tells a quiet socket from one with bytes or an end of stream
// pending, without taking the bytes.
func TestIdle(t *testing.T) {
	c, _, b := pair(t)
	idle := func() bool {
		var v bool
		if err := c.raw.Control(func(fd uintptr) { v = Idle(fd) }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if !idle() {
		t.Fatal("a quiet socket is not idle")
	}
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); idle(); {
		if time.Now().After(deadline) {
			t.Fatal("a socket with a byte pending stayed idle")
		}
		time.Sleep(time.Millisecond) // loopback delivers at once; poll rather than assume
	}
	buf := make([]byte, 4)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("the peeked byte was taken: Read = %q, %v", buf[:n], err)
	}
}
