//go:build sockfault

package sockio

// Faults under the socket layer, for tests: built with the sockfault tag
// (go test -tags sockfault), every read and write latch makes on a socket
// through this package may be cut short, and a write may fail with EAGAIN,
// at random from a seed. On loopback the kernel takes every write whole and
// a read finds the whole message, so the paths that finish a partial write
// or a partial head never run otherwise; on a real link they run all the
// time (issue 22). The normal build has none of this (clean.go).
//
// Which faults, and why they cannot hang a program the kernel would not:
//   - A read takes one byte, or a random part of what was asked. The rest
//     stays in the socket, which stays readable: every caller tries the
//     socket before it waits in the poller (the poller forgets readiness
//     seen before a read starts), so it finds those bytes. The kernel cuts
//     reads this way whenever segments arrive one by one.
//   - A write takes one byte, or a random part of p, and says so: the
//     caller writes the rest. The kernel does this when its send buffer is
//     nearly full.
//   - A write takes nothing and fails with EAGAIN, as the kernel does when
//     the send buffer is full. Here the caller waits in the poller for room,
//     and Go's poller is edge-triggered (EPOLLET): on a socket that is in
//     fact writable no new edge comes, so a bare fake EAGAIN could wait
//     forever where the kernel would have woken the writer when the buffer
//     drained. So a fake EAGAIN is returned only after re-arming the
//     socket's registration in the runtime's epoll set (rearm, an
//     EPOLL_CTL_MOD with the registration as it stands): epoll then reports
//     the socket's readiness again, the edge a drained buffer would have
//     given, and the writer wakes. (On a socket really full, the re-arm's
//     poll marks it as waiting for room, and the kernel's own edge comes
//     when there is.) Where the registration cannot be found (not a
//     poller-registered socket, not Linux) no EAGAIN is injected.
//
// Idle's peek is not faulted: it never consumes bytes or waits.
//
// The seed comes from LATCH_SOCKFAULT_SEED (default 1) or SeedFaults. One
// generator serves every socket, so a seed gives the same faults only as
// far as goroutines take turns the same way.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

var faults struct {
	mu  sync.Mutex
	rnd *rand.Rand

	shortReads, shortWrites, again atomic.Int64
}

func init() {
	seed := uint64(1)
	if s := os.Getenv("LATCH_SOCKFAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			panic(fmt.Sprintf("sockio: LATCH_SOCKFAULT_SEED=%q: %v", s, err))
		}
		seed = v
	}
	SeedFaults(seed)
}

// SeedFaults restarts the fault sequence from seed. Only in the sockfault
// build.
func SeedFaults(seed uint64) {
	faults.mu.Lock()
	faults.rnd = rand.New(rand.NewPCG(seed, 0x50c4fa17))
	faults.mu.Unlock()
}

// FaultStats counts the faults injected since the program started.
type FaultStats struct {
	ShortReads, ShortWrites, Again int64
}

// Faults returns the faults injected so far. Only in the sockfault build.
func Faults() FaultStats {
	return FaultStats{faults.shortReads.Load(), faults.shortWrites.Load(), faults.again.Load()}
}

// roll returns a number in [0, 100) and one in [1, n].
func roll(n int) (pct, cut int) {
	faults.mu.Lock()
	defer faults.mu.Unlock()
	return faults.rnd.IntN(100), 1 + faults.rnd.IntN(n)
}

// read reads one byte (40%), a random part of p (30%) or all of p.
func read(fd uintptr, p []byte) (int, error) {
	if len(p) > 1 {
		switch pct, cut := roll(len(p)); {
		case pct < 40:
			faults.shortReads.Add(1)
			return sysRead(fd, p[:1])
		case pct < 70 && cut < len(p):
			faults.shortReads.Add(1)
			return sysRead(fd, p[:cut])
		}
	}
	return sysRead(fd, p)
}

// write fails with EAGAIN (20%), writes one byte (20%), a random part of p
// (20%) or all of p.
func write(fd uintptr, p []byte) (int, error) {
	pct, cut := roll(max(len(p)-1, 1))
	if pct < 20 && rearm(fd) {
		faults.again.Add(1)
		return 0, syscall.EAGAIN
	}
	if len(p) > 1 && pct < 60 {
		if pct < 40 {
			cut = 1
		}
		faults.shortWrites.Add(1)
		return sysWrite(fd, p[:cut])
	}
	return sysWrite(fd, p)
}
