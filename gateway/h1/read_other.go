//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1

import "errors"

var errTooManyFiles = errors.New("h1: too many open files")

// readIdle waits for the next request's first bytes (holding a buffer
// while it waits: no poller access on this platform).
func (c *conn) readIdle() error {
	c.r, c.w, c.rerr = 0, 0, nil
	return c.fill(bufSize)
}
