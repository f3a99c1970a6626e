//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1

// acceptRetry are the errors after which Serve waits and accepts again
// (beyond timeouts): none known on this platform.
var acceptRetry []error

// readIdle waits for the next request's first bytes (holding a buffer
// while it waits: no poller access on this platform).
func (c *conn) readIdle() error {
	c.r, c.w, c.rerr = 0, 0, nil
	return c.fill(bufSize)
}
