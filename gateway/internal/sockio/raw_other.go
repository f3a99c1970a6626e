//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sockio

import "errors"

// Supported is false here: New returns nil and callers use net.Conn.
const Supported = false

var errUnsupported = errors.ErrUnsupported

// sysRead and sysWrite are not supported here (see Supported).
func sysRead(uintptr, []byte) (int, error)  { return 0, errUnsupported }
func sysWrite(uintptr, []byte) (int, error) { return 0, errUnsupported }

// Idle cannot peek here: every socket counts as idle.
func Idle(uintptr) bool { return true }
