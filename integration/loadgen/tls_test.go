package loadgen

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// With Options.TLS, https URLs are driven over TLS with the client config
// given (here: the test server's roots).
func TestRunTLS(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			served.Add(1)
		}
	}))
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	res, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 4, MaxRequests: 200, Warmup: -1,
		Duration: 10 * time.Second, TLS: &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(8)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests != 200 || served.Load() != 200 {
		t.Fatalf("%d requests, %d errors, %d served over TLS; want 200, 0, 200", res.Requests, res.Errors, served.Load())
	}
}
