package policy

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the client address of r: the peer's (RemoteAddr's)
// address, unless the peer is in trusted; then X-Forwarded-For is read
// from the right (across all its header lines) and the first address that
// is not itself trusted is the client. Entries left of it were written by
// the client and are never believed. A malformed entry stops the walk at
// the last address known good (a trusted proxy). With trusted empty
// nothing a client sends is believed. Addresses are unmapped (::ffff:a.b.c.d
// is a.b.c.d) and lose their zone; entries may carry a port. The zero Addr
// means RemoteAddr is not an address. It does not allocate.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	client, ok := parseHost(r.RemoteAddr)
	if !ok {
		return netip.Addr{}
	}
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
			a, ok := parseHost(strings.TrimSpace(part))
			if !ok {
				return client
			}
			client = a
			if !isTrusted(client, trusted) {
				return client
			}
		}
	}
	return client
}

// parseHost parses "addr", "ipv4:port" or "[ipv6]:port". It chooses the
// parser by shape first: a failed parse allocates its error.
func parseHost(s string) (netip.Addr, bool) {
	var a netip.Addr
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil {
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}

// TrustedPeer reports whether r's peer (its RemoteAddr) is in trusted:
// a proxy whose X-Forwarded-For, -Proto and -Host latch believes. The
// address is read as ClientIP reads it (unmapped, zone dropped, port
// optional). The one trusted-peer rule: ClientIP's hash keys and the
// forwarder's outbound X-Forwarded-* both ask it. It does not allocate.
func TrustedPeer(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	a, ok := parseHost(r.RemoteAddr)
	return ok && isTrusted(a, trusted)
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
