package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// Request bodies take the fast path: streamed as the client framed them,
// and after the backend's 100 Continue when the client expects one.
func TestUploadFraming(t *testing.T) {
	reject := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // without reading the body
	}))
	defer reject.Close()
	tests := []struct {
		name    string
		backend string // echo or reject
		length  int64  // the client's Content-Length (-1: chunked)
		expect  string // the client's Expect
		want    int
		body    string // in the answer
	}{
		{name: "Content-Length", backend: "echo", length: 70000, want: 200, body: "body=70000\n"},
		{name: "chunked", backend: "echo", length: -1, want: 200, body: "body=70000\n"},
		{name: "Expect: 100-continue", backend: "echo", length: 70000, expect: "100-continue", want: 200, body: "body=70000\n"},
		{name: "Expect: 100-continue, refused before the body", backend: "reject", length: 70000, expect: "100-continue", want: 413},
		// Expect is a list (RFC 9110 §10.1.1): gateway/h1 owes this client
		// a 100 Continue, so the backend must be asked for one too (issue
		// 24: forward compared each line whole and sent the body at once).
		{name: "Expect as a list, refused before the body", backend: "reject", length: 70000, expect: "100-Continue, ", want: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := strings.TrimPrefix(echo(t, "b0").URL, "http://")
			if tt.backend == "reject" {
				addr = strings.TrimPrefix(reject.URL, "http://")
			}
			r := newRig(t, false, config.Route{}, nil, addr)
			src := &countingReader{r: strings.NewReader(strings.Repeat("u", 70000))}
			req := httptest.NewRequest(http.MethodPost, "/up", io.NopCloser(src))
			req.ContentLength = tt.length
			if tt.expect != "" {
				req.Header.Set("Expect", tt.expect)
			}
			w, _ := r.do(req)
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.body) {
				t.Fatalf("status %d, body %q; want %d with %q", w.Code, w.Body, tt.want, tt.body)
			}
			if tt.backend == "reject" && src.n != 0 {
				t.Fatalf("%d body bytes read from the client for a backend that refused it first", src.n)
			}
		})
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
