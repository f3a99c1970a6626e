package policy

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
)

// BenchmarkPick measures Pick of every algorithm from parallel goroutines
// over 4, 64 and 1024 passing backends. least_connections and
// least_response_time scan all backends (O(n)); the others are O(1).
func BenchmarkPick(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:4242"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	r.Header.Set("X-User", "u1")
	r.Header.Set("Cookie", "theme=dark; sid=abc")
	opts := BuildOptions{HashHeader: "X-User", HashCookie: "sid",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, name := range slices.Sorted(maps.Keys(Builders)) {
		b.Run(name, func(b *testing.B) {
			for _, n := range []int{4, 64, 1024} {
				b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
					_, set := newSet(b, Options{}, backends(n))
					warm(b, set)
					p := Builders[name](set, opts)
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := p.Pick(r, Skip{}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

// BenchmarkChain is the default chain's Pick, as the gateway calls it.
func BenchmarkChain(b *testing.B) {
	_, set := newSet(b, Options{}, backends(64))
	c, err := NewChain(DefaultPolicy, set, BuildOptions{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = c.Pick(req, Skip{})
		}
	})
}

// BenchmarkAcquireDone is one request's bookkeeping: the breaker's Allow
// and done (gobreaker's mutex, and its done closure: 1 alloc), in-flight
// count, EWMA sample. Parallel goroutines share 4 backends.
func BenchmarkAcquireDone(b *testing.B) {
	_, set := newSet(b, Options{}, backends(4))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tk, err := set.Backends[i%4].Acquire()
			if err != nil {
				b.Error(err)
				return
			}
			tk.Finish(Success, 0)
			i++
		}
	})
}

// BenchmarkHashTableBuild is the state-path cost of a consistent-hash
// table (paid when the ID list changes, not on health changes).
func BenchmarkHashTableBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1024} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			_, set := newSet(b, Options{}, backends(n))
			for b.Loop() {
				newHashTable(set.Backends)
			}
		})
	}
}
