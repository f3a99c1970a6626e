package policy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// Pick allocates nothing, for every algorithm and for the chain (with a
// fallback and slow start in play): a correctness property of the request
// path, so it is asserted, not benchmarked.
func TestPickAllocatesNothing(t *testing.T) {
	clk := newClock()
	r, set := newSet(t, Options{Now: clk.Now, SlowStart: 10 * 1e9}, backends(8))
	set = r.Update(snapshot(backends(9))) // b08 is ramping
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "10.0.0.1:4242"
	req.Header.Set("X-Forwarded-For", "198.51.100.7, 10.0.0.2")
	req.Header.Set("X-User", "u1")
	req.Header.Set("Cookie", "theme=dark; sid=abc")
	opts := BuildOptions{HashHeader: "X-User", HashCookie: "sid",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	var skip Skip
	skip.Add(set.Backends[3])
	for name, build := range Builders {
		p := build(set, opts)
		if n := testing.AllocsPerRun(200, func() { _, _ = p.Pick(req, skip) }); n != 0 {
			t.Errorf("%s: %v allocations per Pick", name, n)
		}
	}
	falls := 0
	c, _ := NewChain([]string{"least_response_time", "p2c"}, set, opts, func(string, string) { falls++ })
	if n := testing.AllocsPerRun(200, func() { _, _ = c.Pick(req, skip) }); n != 0 || falls == 0 {
		t.Errorf("chain: %v allocations per Pick (%d fallbacks)", n, falls)
	}
	if n := testing.AllocsPerRun(200, func() { _ = ClientIP(req, opts.TrustedProxies) }); n != 0 {
		t.Errorf("ClientIP: %v allocations", n)
	}
}
