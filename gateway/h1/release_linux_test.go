//go:build linux

package h1

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// When the connections close, the watcher returns memory once (with
// nothing allocating after a close, no collection would come to do it);
// while they stay open and parked, it does not.
func TestReturnMemoryAfterDrop(t *testing.T) {
	const n = 50
	min, every, free := releaseMin, releaseEvery, freeOSMemory
	returned := make(chan struct{}, 8)
	releaseMin, releaseEvery, freeOSMemory = 40, 0, func() { returned <- struct{}{} }
	lastRelease.Store(0)
	t.Cleanup(func() { releaseMin, releaseEvery, freeOSMemory = min, every, free })

	_, addr, _, closed := parked(t, -1, time.Minute)
	conns := openParked(t, addr, n, func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) })
	select {
	case <-returned:
		t.Fatal("memory returned while every connection is still open")
	case <-time.After(2500 * time.Millisecond): // two of the loop's looks, a second apart
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "connections not closed", func() bool { return closed.Load() == n })
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d connections closed: memory not returned within 5s", n)
	}
	select {
	case <-returned:
		t.Fatal("memory returned twice for one drop")
	case <-time.After(1500 * time.Millisecond):
	}
}

// BenchmarkReturnMemory: what one return costs with a live heap of the
// size 10,000 busy connections keep (H1_LIVE_MIB, default 64, in 512-byte
// objects with pointers): the wall time of the call (its own goroutine,
// off the watcher's loop) and the world stopped during it.
//
//	go test -run '^$' -bench BenchmarkReturnMemory ./gateway/h1/
func BenchmarkReturnMemory(b *testing.B) {
	mib := 64
	if v, err := strconv.Atoi(os.Getenv("H1_LIVE_MIB")); err == nil && v > 0 {
		mib = v
	}
	type node struct {
		next *node
		pad  [504]byte
	}
	var live *node
	for range mib << 11 {
		live = &node{next: live}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		returnMemory()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.PauseTotalNs-before.PauseTotalNs)/float64(b.N)/1e3, "µs-stopped/op")
	b.ReportMetric(float64(mib), "live-MiB")
	runtime.KeepAlive(live)
}
