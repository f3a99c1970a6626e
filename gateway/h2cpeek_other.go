//go:build !unix

package gateway

import "net"

// peekSupported: peekPreface needs MSG_PEEK, so server.h2c on
// implementation h1 is served on unix only.
const peekSupported = false

func peekPreface(net.Conn) (bool, error) { return false, errNoPeek }
