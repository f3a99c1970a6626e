package policy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// BenchmarkPick/<algorithm>/n=<4|64|1024>: parallel picks over n healthy
// backends, allocations reported (all are 0).
//
//	go test -run '^$' -bench BenchmarkPick -benchmem ./policy/
func BenchmarkPick(b *testing.B) {
	names := make([]string, 0, len(Builders))
	for n := range Builders {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, n := range []int{4, 64, 1024} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				_, set := newSet(b, Options{}, backends(n))
				for _, be := range set.Backends { // latency data for least_response_time
					tk, _ := be.Acquire()
					tk.Done(Success)
				}
				p := Builders[name](set, BuildOptions{HashHeader: "X-User", HashCookie: "sid"})
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r := httptest.NewRequest(http.MethodGet, "/", nil)
					r.Header.Set("X-User", "user-42")
					r.Header.Set("Cookie", "sid=abc123")
					for pb.Next() {
						if _, err := p.Pick(r, Skip{}); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkAcquireDone: the per-request breaker and load bookkeeping.
func BenchmarkAcquireDone(b *testing.B) {
	_, set := newSet(b, Options{}, backends(4))
	be := set.Backends[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := be.Acquire()
			if err != nil {
				b.Fatal(err)
			}
			tk.Done(Success)
		}
	})
}
