package forward

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/latchgw/latch/policy"
)

// The forwarder believes a peer's X-Forwarded-For exactly when policy's
// ClientIP does: one trusted-peer rule (issue 24: forward read RemoteAddr
// by its own rule and refused a zoned link-local proxy that ClientIP
// trusted, so the hash key and the backend named different clients).
func TestTrustedPeerAgreesWithClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("10.0.0.0/8")}
	f := &Forwarder{trusted: trusted}
	for _, tc := range []struct {
		remote  string
		trusted bool
	}{
		{"10.1.2.3:5000", true},
		{"[::ffff:10.1.2.3]:5000", true},
		{"[fe80::1%eth0]:5000", true},
		{"[fe80::1]:5000", true},
		{"192.0.2.1:5000", false},
		{"[2001:db8::1%eth0]:5000", false},
	} {
		t.Run(tc.remote, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Forwarded-For", "198.51.100.7")
			h := &head{out: http.Header{}}
			if err := f.writeHead(h, r, &exchange{}); err != nil {
				t.Fatal(err)
			}
			xff := h.out.Get("X-Forwarded-For")
			kept := len(xff) > len("198.51.100.7, ") && xff[:len("198.51.100.7, ")] == "198.51.100.7, "
			believed := policy.ClientIP(r, trusted) == netip.MustParseAddr("198.51.100.7")
			if kept != tc.trusted || believed != tc.trusted {
				t.Fatalf("X-Forwarded-For to the backend %q (chain kept: %v), ClientIP believed it: %v; want both %v",
					xff, kept, believed, tc.trusted)
			}
		})
	}
}
