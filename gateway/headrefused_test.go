package gateway

import (
	"strings"
	"testing"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// Heads gateway/h1 refuses before routing are counted by kind in
// latch_requests_refused_total, as the screen's refusals are (issue 23:
// every refusal a clear status, counted by cause).
func TestHeadRefusalsCounted(t *testing.T) {
	echo := newEchoBackend(t)
	tg := startGatewayWith(t, func(c *config.Config) {
		c.Server.Implementation = "h1"
		c.Server.MaxHeaderBytes = config.Set(8 << 10)
	}, nil, []discovery.Backend{echo.backend()})
	fields := strings.Repeat("X-A: 1\r\n", 120) // over max_header_fields (100)
	for _, c := range []struct {
		reason, raw string
		status      int
	}{
		{"too_many_fields", "GET / HTTP/1.1\r\nHost: h\r\n" + fields + "\r\n", 431},
		{"head_too_large", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n", 431},
		{"request_line", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	} {
		res := sendRaw(tg.url, c.raw)
		got := counter(t, tg.g, "latch_requests_refused_total", map[string]string{"reason": c.reason})
		if res.status != c.status || got != 1 {
			t.Errorf("%s: status %d (want %d), latch_requests_refused_total{reason=%q} = %v; want 1", c.reason, res.status, c.status, c.reason, got)
		}
	}
	if n := echo.hits.Load(); n != 0 {
		t.Errorf("the backend saw %d requests; want none", n)
	}
}
