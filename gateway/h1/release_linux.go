//go:build linux

package h1

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Returning memory: when many connections end or park at once, the
// runtime keeps what their goroutines' stacks and their values took (a
// dead goroutine's stack is freed only by the next collection), and with
// nothing allocating afterwards no collection comes to hand it back to the
// system: 10,000 idle connections closed left RSS where it was for
// minutes. So the watcher's loop looks, once a second, at the process's
// goroutines and at its own connections; when either has fallen by
// releaseMin or more and to half its peak or less, and has stopped
// falling (so one return takes the whole drop), it calls
// debug.FreeOSMemory (a full collection, then every free page returned),
// at most once per releaseEvery for the whole process.
var (
	releaseMin   = 1000
	releaseEvery = 10 * time.Second
	freeOSMemory = returnMemory // tests count the calls
)

// returnMemory collects twice, then returns every free page: the first
// collection only moves what sync.Pools hold (the read and write buffers
// the connections' goroutines left there) to the pools' victim caches;
// the second frees them.
func returnMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// lastRelease is when the process last returned memory (unix ns), shared
// by every Server's watcher.
var lastRelease atomic.Int64

// memWatch is the watcher loop's own state (touched by the loop only).
type memWatch struct {
	checked      int64 // the second last looked at
	peakG, peakC int   // goroutines and watched connections at their highest since the last return
	prevG, prevC int   // and at the last look
}

// watching: a drop worth a return can still come, so the loop must wake
// each second even with nothing parked.
func (m *memWatch) watching() bool { return m.peakG >= releaseMin || m.peakC >= releaseMin }

// check runs in the loop; conns is the watcher's connection count.
func (m *memWatch) check(now time.Time, conns int) {
	if sec := now.Unix(); sec == m.checked {
		return
	} else {
		m.checked = sec
	}
	g := runtime.NumGoroutine()
	m.peakG, m.peakC = max(m.peakG, g), max(m.peakC, conns)
	falling := m.prevG-g >= releaseMin/2 || m.prevC-conns >= releaseMin/2
	m.prevG, m.prevC = g, conns
	dropped := func(peak, n int) bool { return peak-n >= releaseMin && n <= peak/2 }
	if falling || !dropped(m.peakG, g) && !dropped(m.peakC, conns) {
		return
	}
	last, t := lastRelease.Load(), now.UnixNano()
	if t-last < int64(releaseEvery) || !lastRelease.CompareAndSwap(last, t) {
		return // another return was recent: this drop waits for the next one allowed
	}
	m.peakG, m.peakC = g, conns
	go freeOSMemory() // off the loop: a collection takes a while
}
