//go:build linux && sockfault

package sockio

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// runtimeEpoll is the Go runtime's epoll descriptor, once found (0: not
// yet). The runtime opens it once and never closes it.
var runtimeEpoll atomic.Int32

// rearm re-arms fd's registration in the runtime's epoll set as it stands,
// so that epoll reports fd's readiness once more (see fault.go), and
// reports whether it could.
func rearm(fd uintptr) bool {
	epfd := int(runtimeEpoll.Load())
	if epfd == 0 {
		epfd = findRuntimeEpoll()
		if epfd == 0 {
			return false
		}
		runtimeEpoll.Store(int32(epfd))
	}
	ev, ok := registration(epfd, int(fd))
	if !ok {
		return false
	}
	return syscall.EpollCtl(epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev) == nil
}

// findRuntimeEpoll returns the epoll set whose registrations are the
// runtime poller's: edge-triggered, for reading and writing (gateway/h1's
// watcher, the other epoll set in latch, asks only for hang-ups).
func findRuntimeEpoll() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		if t, _ := os.Readlink("/proc/self/fd/" + e.Name()); t != "anon_inode:[eventpoll]" {
			continue
		}
		epfd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		found := false
		eachRegistration(epfd, func(_ int, events uint32, _ uint64) bool {
			found = events&runtimeEvents == runtimeEvents
			return !found
		})
		if found {
			return epfd
		}
	}
	return 0
}

const runtimeEvents = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | 1<<31 // EPOLLET

// registration returns fd's registration in epfd as epoll_ctl takes it:
// its events and its data (the runtime's pointer to fd's poll descriptor,
// which must come back unchanged).
func registration(epfd, fd int) (syscall.EpollEvent, bool) {
	var ev syscall.EpollEvent
	ok := false
	eachRegistration(epfd, func(tfd int, events uint32, data uint64) bool {
		if tfd != fd {
			return true
		}
		if events&runtimeEvents == runtimeEvents {
			ev.Events, ev.Fd, ev.Pad = events, int32(uint32(data)), int32(uint32(data>>32))
			ok = true
		}
		return false
	})
	return ev, ok
}

// eachRegistration calls f with each registration in epfd, as
// /proc/self/fdinfo lists them ("tfd: 9 events: 8000201d data: 3fd2…"),
// until f returns false.
func eachRegistration(epfd int, f func(tfd int, events uint32, data uint64) bool) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		return
	}
	for line := range strings.Lines(string(b)) {
		w := strings.Fields(line)
		if len(w) < 6 || w[0] != "tfd:" || w[2] != "events:" || w[4] != "data:" {
			continue
		}
		tfd, err1 := strconv.Atoi(w[1])
		events, err2 := strconv.ParseUint(w[3], 16, 32)
		data, err3 := strconv.ParseUint(w[5], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if !f(tfd, uint32(events), data) {
			return
		}
	}
}
