//go:build !linux

package gateway

import (
	"golang.org/x/sys/unix"
)

func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// dropSYNs has no equivalent here: the listener closes without draining.
func dropSYNs(uintptr) error { return nil }

func acceptQueue(uintptr) (int, error) { return 0, nil }
