package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeHTTP measures latch's handler on the request path. The
// backend is an in-process httptest server and the client calls the
// handler directly, so the figures include the backend's own allocations;
// BenchmarkLoad (integration/) reads latch's alone from its /metrics.
//
//	go test -run '^$' -bench BenchmarkServeHTTP -benchmem ./gateway/
func BenchmarkServeHTTP(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer be.Close()
	tb := &testBackend{id: "a", srv: be}
	for _, bc := range []struct {
		name   string
		cookie bool
		access bool
	}{{"sticky", true, false}, {"new", false, false}, {"sticky+accesslog", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			tg := startGatewayB(b, bc.access, tb)
			h := tg.g.Handler()
			var cookie string
			if bc.cookie {
				_, _, cookie = tg.get(b, "/", "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodGet, "/", nil)
					if cookie != "" {
						r.Header.Set("Cookie", cookie)
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("status %d", w.Code)
					}
				}
			})
		})
	}
}
