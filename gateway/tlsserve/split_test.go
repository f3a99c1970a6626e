package tlsserve

import (
	"testing"
	"time"
)

// A handshake on h1 is bounded by server.read_header_timeout, and by
// defaultHandshakeTimeout when that is off: never by nothing.
func TestHandshakeTimeout(t *testing.T) {
	for _, c := range []struct {
		name             string
		readHeader, want time.Duration
	}{
		{"read_header_timeout set", 3 * time.Second, 3 * time.Second},
		{"read_header_timeout 0 (off)", 0, defaultHandshakeTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := HandshakeTimeout(c.readHeader); got != c.want || got <= 0 {
				t.Fatalf("handshake timeout %v; want %v", got, c.want)
			}
		})
	}
}
