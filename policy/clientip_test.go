package policy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fd00::/8"),
	}
	tests := []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxy", "203.0.113.1:5", nil, trusted, "203.0.113.1"},
		{"untrusted peer with xff ignored", "203.0.113.1:5", []string{"1.2.3.4"}, trusted, "203.0.113.1"},
		{"nothing trusted by default", "10.0.0.1:5", []string{"1.2.3.4"}, nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:5", []string{"1.2.3.4"}, trusted, "1.2.3.4"},
		{"chain of trusted proxies", "10.0.0.1:5", []string{"1.2.3.4, 10.9.9.9, 10.8.8.8"}, trusted, "1.2.3.4"},
		{"spoofed left part ignored", "10.0.0.1:5", []string{"6.6.6.6, 1.2.3.4"}, trusted, "1.2.3.4"},
		{"several header lines", "10.0.0.1:5", []string{"6.6.6.6", "1.2.3.4, 10.1.1.1"}, trusted, "1.2.3.4"},
		{"trusted peer without xff", "10.0.0.1:5", nil, trusted, "10.0.0.1"},
		{"all trusted", "10.0.0.1:5", []string{"10.0.0.3, 10.0.0.2"}, trusted, "10.0.0.3"},
		{"garbage stops the walk", "10.0.0.1:5", []string{"1.2.3.4, not-an-ip"}, trusted, "10.0.0.1"},
		{"garbage after a trusted hop", "10.0.0.1:5", []string{"1.2.3.4, bad, 10.0.0.7"}, trusted, "10.0.0.7"},
		{"empty entry is garbage", "10.0.0.1:5", []string{"1.2.3.4,,"}, trusted, "10.0.0.1"},
		{"entry with port", "10.0.0.1:5", []string{"1.2.3.4:4711"}, trusted, "1.2.3.4"},
		{"ipv6 peer", "[2001:db8::9]:5", []string{"1.2.3.4"}, trusted, "2001:db8::9"},
		{"ipv6 trusted peer", "[::1]:5", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"ipv6 chain", "[fd00::1]:5", []string{"2001:db8::1, fd00::2"}, trusted, "2001:db8::1"},
		{"ipv6 entry with port", "[::1]:5", []string{"[2001:db8::1]:443"}, trusted, "2001:db8::1"},
		{"ipv6 zone dropped", "[fe80::1%eth0]:5", nil, trusted, "fe80::1"},
		{"ipv4-mapped peer", "[::ffff:10.0.0.1]:5", []string{"1.2.3.4"}, trusted, "1.2.3.4"},
		{"ipv4-mapped entry", "10.0.0.1:5", []string{"::ffff:1.2.3.4"}, trusted, "1.2.3.4"},
		{"remote without port", "203.0.113.1", nil, trusted, "203.0.113.1"},
		{"garbage remote", "pipe", []string{"1.2.3.4"}, trusted, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			r.Header["X-Forwarded-For"] = tt.xff
			if got := ClientIP(r, tt.trusted).String(); got != tt.want {
				t.Fatalf("ClientIP = %s; want %s", got, tt.want)
			}
		})
	}
}

func TestTrustedPeer(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}
	for _, tt := range []struct {
		remote  string
		trusted []netip.Prefix
		want    bool
	}{
		{"10.0.0.1:5", trusted, true},
		{"10.0.0.1:5", nil, false},
		{"203.0.113.1:5", trusted, false},
		{"[::ffff:10.0.0.1]:5", trusted, true},
		{"[fe80::1%eth0]:5", trusted, true},
		{"10.0.0.1", trusted, true},
		{"pipe", trusted, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if got := TrustedPeer(r, tt.trusted); got != tt.want {
			t.Errorf("TrustedPeer(%q, %v) = %v; want %v", tt.remote, tt.trusted, got, tt.want)
		}
		if got, client := TrustedPeer(r, tt.trusted), ClientIP(r, tt.trusted); got && client != netip.MustParseAddr("10.0.0.1") && client != netip.MustParseAddr("fe80::1") {
			t.Errorf("%q: trusted, but ClientIP gave %v without an X-Forwarded-For", tt.remote, client)
		}
	}
}
