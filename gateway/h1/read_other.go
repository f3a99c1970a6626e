//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1

// acceptRetry are the errors after which Serve waits and accepts again
// (beyond timeouts): none known on this platform.
var acceptRetry []error

// readIdle waits for the next request's first bytes (holding a buffer
// while it waits: no poller access on this platform, and never parks).
func (c *conn) readIdle() (park bool, err error) {
	c.r, c.w, c.rerr = 0, 0, nil
	_ = c.rwc.SetReadDeadline(c.idleUntil)
	return false, c.fill(bufSize)
}
