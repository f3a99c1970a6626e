//go:build linux

package h1

import (
	"syscall"
	"time"
)

// Parking: an idle keep-alive connection on a plain socket waits in the
// poller for parkAfter, then its goroutine ends and the watcher's epoll
// set waits for it instead (EPOLLIN, one-shot), holding only the conn
// value: no goroutine stack, no buffer. Its first bytes (or its hang-up)
// start a new goroutine on it (conn.resume). Its idle timeout is kept by
// the watcher's loop, a second at a time, in a wheel of one-second slots
// (no timer per connection).
//
// Who owns a conn is decided by its state: the goroutine that moves it
// out of stateParked (the loop to resume it, a sweep or Shutdown to close
// it) is the only one that touches it next.

// parkEvents wait for the next request's bytes or a hang-up, once: the
// event disables the registration until unpark sets watchEvents back.
const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// defaultParkAfter is how long an idle connection keeps its goroutine.
// Parking and resuming cost an epoll_ctl each and a goroutine start, so a
// busy keep-alive connection (the next request within a second) never
// parks and costs what it did; one that waits longer costs only the conn.
const defaultParkAfter = time.Second

// canPark reports whether the watcher can take idle connections.
func (w *watcher) canPark() bool { return w != nil }

// park hands the idle connection c to the watcher; false: it cannot (the
// watcher stopped, c was closed by Shutdown, or its socket is gone), and
// the caller closes c. On true the caller's goroutine must not touch c
// again.
func (w *watcher) park(c *conn) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	op := syscall.EPOLL_CTL_MOD
	if c.watchID == 0 {
		w.next++
		c.watchID = w.next
		w.conns[c.watchID] = c
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(c.watchID), Pad: int32(c.watchID >> 32)}
	// The loop waits on w.mu for an event that comes before the state
	// says parked.
	if w.ctl(c, op, &ev) != nil {
		return false
	}
	if !c.state.CompareAndSwap(stateIdle, stateParked) {
		return false // Shutdown closed it meanwhile
	}
	if !c.idleUntil.IsZero() {
		key := c.idleUntil.Unix() + 1
		c.slot = wheelSlot{key: key, idx: len(w.wheel[key])}
		w.wheel[key] = append(w.wheel[key], c)
		if w.parked++; w.parked == 1 {
			// The loop may be waiting with no timeout: make it sweep.
			one := [8]byte{1}
			_, _ = syscall.Write(w.wake, one[:])
		}
	}
	return true
}

// unpark watches a resumed connection for hang-ups only again (the event
// that woke it disabled its registration).
func (w *watcher) unpark(c *conn) {
	if w == nil {
		return
	}
	ev := syscall.EpollEvent{Events: watchEvents, Fd: int32(c.watchID), Pad: int32(c.watchID >> 32)}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.stopped {
		_ = w.ctl(c, syscall.EPOLL_CTL_MOD, &ev)
	}
}

// wheelSlot is where a parked connection sits in the wheel (key 0: not).
type wheelSlot struct {
	key int64
	idx int
}

// unwheel takes c out of the wheel; w.mu is held.
func (w *watcher) unwheel(c *conn) {
	if c.slot.key == 0 {
		return
	}
	b := w.wheel[c.slot.key]
	last := b[len(b)-1]
	b[c.slot.idx], last.slot.idx = last, c.slot.idx
	b[len(b)-1] = nil
	if b = b[:len(b)-1]; len(b) == 0 {
		delete(w.wheel, c.slot.key)
	} else {
		w.wheel[c.slot.key] = b
	}
	c.slot = wheelSlot{}
	w.parked--
}

// timeout is the loop's wait: until the next second while connections
// are parked with an idle timeout or a drop in them may call for memory
// to be returned (release_linux.go), else until an event.
func (w *watcher) timeout() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.parked == 0 && !w.mem.watching() {
		return -1
	}
	return 1000 - int(time.Now().UnixMilli()%1000) + 1
}

// sweep closes the parked connections whose idle timeout has passed.
func (w *watcher) sweep(now time.Time) {
	sec := now.Unix()
	var due []*conn
	w.mu.Lock()
	if w.parked == 0 {
		w.swept = sec
	}
	for ; w.swept < sec; w.swept++ {
		for _, c := range w.wheel[w.swept+1] {
			c.slot = wheelSlot{}
			if c.state.CompareAndSwap(stateParked, stateClosed) {
				due = append(due, c)
			}
		}
		w.parked -= len(w.wheel[w.swept+1])
		delete(w.wheel, w.swept+1)
	}
	w.mu.Unlock()
	for _, c := range due {
		c.close()
	}
}
