//go:build !linux

package h1

// watcher: without epoll, a client that leaves is noticed on the next
// write only.
type watcher struct{}

func newWatcher() *watcher        { return nil }
func (w *watcher) arm(c *conn)    {}
func (w *watcher) forget(c *conn) {}
func (w *watcher) stop()          {}

// Without the watcher, idle connections keep their goroutine.
func (w *watcher) canPark() bool     { return false }
func (w *watcher) park(c *conn) bool { return false }
func (w *watcher) unpark(c *conn)    {}

type wheelSlot struct{}

const defaultParkAfter = 0
