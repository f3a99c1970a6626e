package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An HTTP/1.1 client's POST to a gRPC route (an h2c backend) with an empty
// body gets grpc-go's answer at once. Before, a Content-Length of 0 went
// as a stream ended on its HEADERS frame, which grpc-go's server never
// noticed: the call hung until the client gave up (60 s for latch's
// response timeout).
func TestH1EmptyPostToH2CBackend(t *testing.T) {
	b := newGRPCBackend(t, "g1")
	tg, _ := startGRPCGateway(t, nil, b)
	h1 := tg.client
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	for _, body := range []struct {
		name string
		r    io.Reader
		cl   int64
	}{{"content-length 0", http.NoBody, 0}, {"chunked, no chunk", strings.NewReader(""), -1}} {
		req, _ := http.NewRequest("POST", tg.url+"/grpc.testing.TestService/UnaryCall", body.r)
		req.Header.Set("Content-Type", "application/grpc")
		req.ContentLength = body.cl
		start := time.Now()
		resp, err := h1.Do(req)
		if err != nil {
			t.Fatalf("%s: %v after %v", body.name, err, time.Since(start))
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Logf("%s: %d %s grpc-status=%q %q in %v", body.name, resp.StatusCode, resp.Proto,
			resp.Header.Get("Grpc-Status")+resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")+resp.Trailer.Get("Grpc-Message"), time.Since(start))
		if st := resp.Header.Get("Grpc-Status") + resp.Trailer.Get("Grpc-Status"); resp.StatusCode != 200 || st == "" || st == "0" || !strings.Contains(resp.Proto, "1.1") {
			t.Fatalf("%s: %d %s grpc-status %q; want 200 over HTTP/1.1 with grpc-go's error status", body.name, resp.StatusCode, resp.Proto, st)
		}
	}
}
