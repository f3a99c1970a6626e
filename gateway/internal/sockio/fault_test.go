//go:build sockfault

package sockio

import (
	"bytes"
	"io"
	"runtime"
	"testing"
	"time"
)

// Under faults a Conn still moves every byte, in order: writes cut short
// or refused with EAGAIN are finished, reads of one byte add up.
func TestSockFaultBytesIntact(t *testing.T) {
	SeedFaults(22)
	c, a, b := pair(t)
	before := Faults()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	got := make(chan []byte)
	go func() {
		buf, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		got <- buf
	}()
	_ = a.SetDeadline(time.Now().Add(10 * time.Second))
	for p := big; len(p) > 0; p = p[4<<10:] { // many writes, many faults
		if n, err := c.Write(p[:4<<10]); err != nil || n != 4<<10 {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, 4<<10)
		}
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the peer read other bytes than were written")
	}

	go func() { _, _ = b.Write(big) }()
	var read []byte
	buf := make([]byte, 8<<10)
	for len(read) < len(big) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(read), err)
		}
		read = append(read, buf[:n]...)
	}
	if !bytes.Equal(read, big) {
		t.Fatal("read other bytes than the peer wrote")
	}

	f := Faults()
	if f.ShortReads == before.ShortReads || f.ShortWrites == before.ShortWrites {
		t.Fatalf("faults injected: %+v, before %+v: want short reads and short writes", f, before)
	}
	if runtime.GOOS == "linux" && f.Again == before.Again {
		t.Fatalf("faults injected: %+v, before %+v: want EAGAIN too", f, before)
	}
}

// A fake EAGAIN on a socket with room does not strand the writer: the
// runtime's poller is edge-triggered and would wait for an edge that never
// comes, but for the re-arm that comes with each fake EAGAIN (fault.go).
// Small writes to a peer that reads at once: many fake EAGAINs, each on a
// writable socket.
func TestSockFaultAgainWakesWriter(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("EAGAIN is injected on Linux only")
	}
	SeedFaults(7)
	c, a, b := pair(t)
	go func() { _, _ = io.Copy(io.Discard, b) }()
	before := Faults().Again
	for i := 0; Faults().Again-before < 50; i++ {
		_ = a.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("write %d (%d fake EAGAINs so far): %v", i, Faults().Again-before, err)
		}
	}
}
