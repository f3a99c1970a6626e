//go:build linux

package h1

import (
	"sync"
	"syscall"
	"time"
)

// watcher notices clients that leave while their request is in flight,
// without a goroutine per request (net/http's background read): one
// goroutine per Server waits in epoll for the peer's hang-up (EPOLLRDHUP,
// edge-triggered: registered once, at the connection's first request, it
// fires once) and cancels the connection's context — the request's
// context. A hang-up between requests cancels it too: the connection's
// next read then ends it.
//
// It also keeps the parked connections (park_linux.go): idle ones whose
// goroutine has ended, waiting in the same epoll set for their next bytes,
// and closes those whose idle timeout passes; and, a second at a time,
// returns freed memory to the system after a large drop in connections or
// goroutines (release_linux.go).
type watcher struct {
	epfd, wake int // the epoll set; an eventfd that stops the loop
	mu         sync.RWMutex
	stopped    bool // epfd may be closed: no epoll_ctl any more
	conns      map[uint64]*conn
	next       uint64
	done       chan struct{}

	wheel  map[int64][]*conn // parked connections by the second after their idle timeout
	parked int               // entries in wheel
	swept  int64             // the last second swept

	mem memWatch // when to return freed memory (release_linux.go); the loop's own
}

const watchEvents = syscall.EPOLLRDHUP | 1<<31 // EPOLLET

func newWatcher() *watcher {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil // no watching: requests run to their end
	}
	r1, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil
	}
	w := &watcher{epfd: epfd, wake: int(r1), conns: map[uint64]*conn{}, done: make(chan struct{}),
		wheel: map[int64][]*conn{}, swept: time.Now().Unix()}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wake, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(w.wake)
		return nil
	}
	go w.loop()
	return w
}

// arm watches c until its peer hangs up: one epoll_ctl per connection,
// at its first request; later calls cost nothing.
func (w *watcher) arm(c *conn) {
	if w == nil || c.sock == nil || c.watchID != 0 {
		return
	}
	w.mu.Lock()
	w.next++
	c.watchID = w.next
	w.conns[c.watchID] = c
	w.mu.Unlock()
	ev := syscall.EpollEvent{Events: watchEvents, Fd: int32(c.watchID), Pad: int32(c.watchID >> 32)}
	w.mu.RLock()
	if !w.stopped {
		_ = w.ctl(c, syscall.EPOLL_CTL_ADD, &ev)
	}
	w.mu.RUnlock()
}

// forget drops c (before its socket closes, which leaves the epoll set).
func (w *watcher) forget(c *conn) {
	if w == nil || c.watchID == 0 {
		return
	}
	w.mu.Lock()
	delete(w.conns, c.watchID)
	w.unwheel(c)
	if !w.stopped {
		_ = w.ctl(c, syscall.EPOLL_CTL_DEL, nil)
	}
	w.mu.Unlock()
}

// peekEOF reports whether c's socket has nothing left to read but the
// end of the stream (or was reset): a hung-up parked connection the
// watcher closes itself, without a goroutine to read the EOF.
func (c *conn) peekEOF() bool {
	var n int
	var err error
	if c.sock.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}) != nil {
		return false
	}
	return err == nil && n == 0 || err == syscall.ECONNRESET
}

// ctl is epoll_ctl on c's socket. Inside Control the descriptor cannot be
// closed (and its number reused by another connection's socket) under
// the call; once closed it has left the epoll set by itself.
func (w *watcher) ctl(c *conn, op int, ev *syscall.EpollEvent) error {
	var err error
	if cerr := c.sock.Control(func(fd uintptr) { err = syscall.EpollCtl(w.epfd, op, int(fd), ev) }); cerr != nil {
		return cerr
	}
	return err
}

func (w *watcher) loop() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 64)
	for {
		n, err := syscall.EpollWait(w.epfd, events, w.timeout())
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				w.mu.RLock()
				stopped := w.stopped
				w.mu.RUnlock()
				if stopped {
					syscall.Close(w.epfd)
					syscall.Close(w.wake)
					return // stop
				}
				var b [8]byte
				_, _ = syscall.Read(w.wake, b[:]) // a first parked connection: wait a second at most now
				continue
			}
			hup := ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
			w.mu.Lock()
			c := w.conns[id]
			var wake, gone bool
			if c != nil && hup && c.state.Load() == stateParked && c.peekEOF() {
				gone = c.state.CompareAndSwap(stateParked, stateClosed)
			} else {
				wake = c != nil && c.state.CompareAndSwap(stateParked, stateActive)
			}
			if wake || gone {
				w.unwheel(c)
			}
			w.mu.Unlock()
			switch {
			case gone:
				c.close() // the client hung up with nothing left to read: no goroutine for it
			case wake:
				go c.resume() // bytes to read, or the client hung up with some: its goroutine sees which
			case c != nil && c.cancel != nil:
				c.cancel()
			}
		}
		now := time.Now()
		w.sweep(now)
		w.mu.RLock()
		conns := len(w.conns)
		w.mu.RUnlock()
		w.mem.check(now, conns)
	}
}

// stop ends the loop and waits for it.
func (w *watcher) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	w.mu.Unlock()
	one := [8]byte{1}
	_, _ = syscall.Write(w.wake, one[:])
	<-w.done
}
