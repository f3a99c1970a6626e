package forward

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness/netns"
)

// Issue 22 over a real link: the fast path and ReverseProxy to a backend in
// a network namespace behind veth, whose socket buffers are 4 KiB and which
// reads slowly, over a link limited to 50 Mbit/s: heads up to 200 KiB,
// bodies up to 4 MiB by length and chunked. Byte for byte, both ways.
func TestPushBackOverVeth(t *testing.T) {
	hosts := netns.StartHosts(t, 1)
	host := hosts.Hosts[0]
	host.Buffers(t, 4096, 4096)
	hosts.Limit(t, host, "50mbit")
	ln := host.Listen(t, 0, netns.SockOpts{RcvBuf: 4096, SndBuf: 4096})
	slow := netns.Pace{Chunk: 1024, Pause: 100 * time.Microsecond, Budget: 256 << 10}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go digestServe(netns.Paced(c, slow, netns.Pace{}))
		}
	}()
	addr := ln.Addr().String()
	for _, p := range paths {
		r := newRig(t, p.slow, config.Route{}, func(c *config.Config) {
			c.Transport.ResponseHeaderTimeout = config.Set(20 * time.Second)
		}, addr)
		for _, tc := range []struct {
			name       string
			head, body int
			chunked    bool
		}{
			{"GET, 60 KiB head", 60 << 10, 0, false},
			{"GET, 200 KiB head", 200 << 10, 0, false},
			{"POST, 4 MiB by length", 1 << 10, 4 << 20, false},
			{"POST, 1 MiB chunked, 60 KiB head", 60 << 10, 1 << 20, true},
		} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				big := strings.Repeat("h", tc.head)
				body := strings.Repeat("0123456789abcdef", tc.body/16)
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				if tc.body > 0 {
					req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
					if tc.chunked {
						req.ContentLength = -1
					}
				}
				req.RemoteAddr, req.Host = "127.0.0.1:5555", "shop.example.com"
				req.Header.Set("X-Big", big)
				w, _ := r.do(req)
				want := fmt.Sprintf("%x %x", sha256.Sum256([]byte(big)), sha256.Sum256([]byte(body)))
				if w.Code != 200 || w.Body.String() != want {
					t.Fatalf("got %d %.80q; want 200 and the digests of what was sent", w.Code, w.Body.String())
				}
			})
		}
	}
}

// digestServe answers each request on c with the SHA-256 of its X-Big
// field and of its body.
func digestServe(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		h := sha256.New()
		if _, err := io.Copy(h, req.Body); err != nil {
			return
		}
		out := fmt.Sprintf("%x %x", sha256.Sum256([]byte(req.Header.Get("X-Big"))), h.Sum(nil))
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out); err != nil {
			return
		}
	}
}
