//go:build linux

package h1

import (
	"sync"
	"syscall"
)

// watcher notices clients that leave while their request is in flight,
// without a goroutine per request (net/http's background read): one
// goroutine per Server waits in epoll for the peer's hang-up (EPOLLRDHUP,
// edge-triggered: registered once, at the connection's first request, it
// fires once) and cancels the connection's context — the request's
// context. A hang-up between requests cancels it too: the connection's
// next read then ends it.
type watcher struct {
	epfd, wake int // the epoll set; an eventfd that stops the loop
	mu         sync.RWMutex
	stopped    bool // epfd may be closed: no epoll_ctl any more
	conns      map[uint64]*conn
	next       uint64
	done       chan struct{}
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
	w := &watcher{epfd: epfd, wake: int(r1), conns: map[uint64]*conn{}, done: make(chan struct{})}
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
	if w == nil || c.fd < 0 || c.watchID != 0 {
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
		_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev)
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
	if !w.stopped {
		_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
	w.mu.Unlock()
}

func (w *watcher) loop() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 64)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 && ev.Events&syscall.EPOLLIN != 0 {
				syscall.Close(w.epfd)
				syscall.Close(w.wake)
				return // stop
			}
			w.mu.RLock()
			c := w.conns[id]
			w.mu.RUnlock()
			if c != nil && c.cancel != nil {
				c.cancel()
			}
		}
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
