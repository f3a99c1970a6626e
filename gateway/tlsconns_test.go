package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// stalledHello is a TLS record header announcing a 16 KB handshake
// message, and nothing of it: a handshake that never goes on.
const stalledHello = "\x16\x03\x01\x40\x00"

// Issue 23, item 2: connections waiting for their TLS handshake were
// counted by nothing: 6,000 of them read latch_connections_open 0 under
// max_connections: 200. They count from accept; the one over the cap is
// closed before any handshake; once the stalled ones end (the clients
// leave, or the handshake timeout passes) new connections are served.
func TestTLSHandshakesCountAgainstCaps(t *testing.T) {
	const n = 3
	ca := newTestCA(t)
	backend := newBackend(t, "a")
	for _, cap := range []struct {
		name, label string
		set         func(*config.Server)
	}{
		{"max_connections", "total", func(s *config.Server) { s.MaxConnections = config.Set(n) }},
		{"max_connections_per_ip", "per_ip", func(s *config.Server) { s.MaxConnectionsPerIP = n }},
	} {
		for _, end := range []struct {
			name    string
			timeout time.Duration // server.read_header_timeout (0: the default, 10s)
		}{
			{"the clients leave", 0},
			{"the handshake times out", 2 * time.Second},
		} {
			t.Run(cap.name+", "+end.name, func(t *testing.T) {
				tg := startTLSGateway(t, ca, "h1", false, func(c *config.Config) {
					cap.set(&c.Server)
					if end.timeout > 0 {
						c.Server.ReadHeaderTimeout = config.Set(end.timeout)
					}
				}, backend)
				addr := strings.TrimPrefix(tg.url, "https://")
				open := func() float64 { return counter(t, tg.g, "latch_connections_open", nil) }
				refused := func() float64 {
					return counter(t, tg.g, "latch_connections_refused_total", map[string]string{"limit": cap.label})
				}

				var stalled []net.Conn
				for range n {
					stalled = append(stalled, dialStalled(t, addr))
				}
				waitUntil(t, "the stalled handshakes counted in latch_connections_open", func() bool { return open() == n })

				over := dialStalled(t, addr)
				_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, err := over.Read(make([]byte, 1))
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("connection %d over the cap: still open after 5s; want it closed at once", n+1)
				}
				if k != 0 || err == nil {
					t.Fatalf("connection %d over the cap: read %d bytes, %v; want it closed", n+1, k, err)
				}
				if got := refused(); got != 1 {
					t.Errorf("latch_connections_refused_total{limit=%q} = %v; want 1", cap.label, got)
				}
				if got := open(); got != n {
					t.Errorf("latch_connections_open = %v with %d stalled handshakes; want %d", got, n, n)
				}

				if end.timeout == 0 {
					for _, c := range stalled {
						c.Close()
					}
				}
				waitUntil(t, "the stalled handshakes counted out", func() bool { return open() == 0 })
				if end.timeout > 0 {
					for i, c := range stalled {
						// latch closed them: the read ends at once.
						_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
						if _, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
							t.Errorf("stalled connection %d after the handshake timeout: %v; want it closed", i, err)
						}
					}
				}
				resp, err := tg.client.Get(tg.url + "/")
				if err != nil {
					t.Fatalf("a connection once the stalled ones ended: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("a connection once the stalled ones ended: %d; want 200", resp.StatusCode)
				}
			})
		}
	}
}

// dialStalled opens a TCP connection to addr and starts a TLS handshake
// that never goes on; it is closed when the test ends.
func dialStalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, stalledHello); err != nil {
		t.Fatal(err)
	}
	return c
}
