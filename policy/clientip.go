package policy

import (
	"net/http"
	"net/netip"
	"strings"
)

// Prefix is a trusted proxy network.
type Prefix = netip.Prefix

// ClientIP returns the client address of r: the peer's address, unless the
// peer is a trusted proxy; then X-Forwarded-For is read from the right and
// the first address that is not itself a trusted proxy is the client. A
// malformed entry stops the walk at the last address known good. Nothing
// a client sends is believed when trusted is empty.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	client := ap.Addr().Unmap()
	if !isTrusted(client, trusted) {
		return client
	}
	lines := r.Header["X-Forwarded-For"]
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			var part string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				part, line = line[j+1:], line[:j]
			} else {
				part, line = line, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				return client
			}
			client = a.Unmap()
			if !isTrusted(client, trusted) {
				return client
			}
		}
	}
	return client
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
