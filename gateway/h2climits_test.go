package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/latchgw/latch/gateway/config"
)

// The h1 server's limits hold over h2c: per stream, the head's bytes
// (server.max_header_bytes) and fields (server.max_header_fields); per
// connection, server.max_connections and server.read_header_timeout
// (for the first bytes, which sort the connection). And a client that
// sends its first bytes one at a time is still sorted right.
func TestH2CLimits(t *testing.T) {
	b := newBackend(t, "a")
	for _, impl := range implementations {
		t.Run(impl, func(t *testing.T) {
			tg := startGateway(t, func(c *config.Config) {
				c.Server.Implementation = impl
				c.Server.H2C = true
				c.Server.ReadHeaderTimeout = config.Set(300 * time.Millisecond)
				c.Server.MaxConnections = config.Set(3)
			}, b)
			addr := strings.TrimPrefix(tg.url, "http://")

			t.Run("head bytes and fields, per stream", func(t *testing.T) {
				var many []hpack.HeaderField
				for i := range 150 { // over max_header_fields (100)
					many = append(many, hpack.HeaderField{Name: fmt.Sprintf("x-f%d", i), Value: "v"})
				}
				a := dialAttacker(t, addr, true)
				defer a.c.Close()
				streams := []struct {
					extra []hpack.HeaderField
					want  string
				}{{many, "431"}} // and the connection ends after it (Connection: close, as on h1)
				for i, st := range streams {
					if err := a.request(uint32(2*i+1), st.extra); err != nil {
						t.Fatal(err)
					}
				}
				deadline := time.Now().Add(5 * time.Second)
				for i, st := range streams {
					id := uint32(2*i + 1)
					for a.status(id) == "" && !a.ended() && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					if got := a.status(id); got != st.want {
						t.Fatalf("stream %d answered %q; want %s (%s)", id, got, st.want, a.outcome())
					}
				}

				// Heads over max_header_bytes (64 KiB): a 431 when the
				// excess is found decoding one frame; a block that goes on
				// past the limit in CONTINUATION frames, or one field
				// longer than the limit, ends the connection (x/net/http2
				// stops decoding there, the CVE-2023-45288 fix).
				var big []hpack.HeaderField
				for i := range 80 {
					big = append(big, hpack.HeaderField{Name: fmt.Sprintf("x-b%d", i), Value: strings.Repeat("b", 1<<10)})
				}
				for name, extra := range map[string][]hpack.HeaderField{
					"80 fields of 1 KiB":  big,
					"one field of 70 KiB": {{Name: "x-big", Value: strings.Repeat("b", 70<<10)}},
				} {
					a := dialAttacker(t, addr, true)
					defer a.c.Close()
					if err := a.request(1, extra); err != nil {
						t.Fatal(err)
					}
					deadline := time.Now().Add(5 * time.Second)
					for a.status(1) == "" && !a.ended() && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					if st := a.status(1); st != "431" && (a.goAway() == "" || !a.ended()) {
						t.Fatalf("%s: %s; want 431, or GOAWAY and the connection closed", name, a.outcome())
					}
					t.Logf("%s: %s", name, a.outcome())
				}
			})

			t.Run("read_header_timeout before the first bytes", func(t *testing.T) {
				for _, first := range []string{"", "PRI * HTTP/2"} {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					start := time.Now()
					_, _ = io.WriteString(c, first)
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, err := c.Read(make([]byte, 512))
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatalf("a connection that sent %q was still open after 5s", first)
					}
					t.Logf("sent %q: closed after %v (%d bytes answered, %v)", first, time.Since(start).Round(time.Millisecond), n, err)
				}
			})

			t.Run("max_connections counts h2c connections", func(t *testing.T) {
				// The subtests before have closed theirs; wait for the
				// server to see it.
				deadline := time.Now().Add(5 * time.Second)
				for counter(t, tg.g, "latch_connections_open", nil) != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("%v connections still counted", counter(t, tg.g, "latch_connections_open", nil))
					}
					time.Sleep(5 * time.Millisecond)
				}
				var open []*attacker
				for range 3 {
					open = append(open, dialAttacker(t, addr, true))
				}
				// The fourth is over the cap: closed (h1 sorts it after
				// accept) or its requests refused 503 (net/http).
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.WriteString(c, http2.ClientPreface)
				fr := http2.NewFramer(c, c)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				_ = fr.WriteSettings()
				var hb bytes.Buffer
				enc := hpack.NewEncoder(&hb)
				for _, f := range requestFields("/") {
					_ = enc.WriteField(f)
				}
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
				refused := ""
				for refused == "" {
					f, err := fr.ReadFrame()
					if err != nil {
						refused = "closed (" + err.Error() + ")"
						break
					}
					if h, ok := f.(*http2.MetaHeadersFrame); ok {
						if st := h.PseudoValue("status"); st != "503" {
							t.Fatalf("a request on a 4th connection, over max_connections 3, answered %s", st)
						}
						refused = "503"
					}
				}
				t.Logf("4th connection over max_connections 3: %s", refused)
				for _, a := range open {
					a.c.Close()
				}
				// The slots come back.
				deadline = time.Now().Add(5 * time.Second)
				for {
					err := h2cGet(h2cHTTPClient(), tg.url+"/")
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("after the three closed: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})

			t.Run("first bytes one at a time", func(t *testing.T) {
				for _, opening := range []string{http2.ClientPreface, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"} {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					_ = c.(*net.TCPConn).SetNoDelay(true)
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					for i := range len(opening) {
						if _, err := io.WriteString(c, opening[i:i+1]); err != nil {
							t.Fatal(err)
						}
					}
					if opening != http2.ClientPreface {
						resp, err := http.ReadResponse(bufio.NewReader(c), nil)
						if err != nil || resp.StatusCode != http.StatusOK {
							t.Fatalf("HTTP/1.1 a byte at a time: %v %v", resp, err)
						}
						continue
					}
					fr := http2.NewFramer(c, c)
					if err := fr.WriteSettings(); err != nil {
						t.Fatal(err)
					}
					f, err := fr.ReadFrame()
					if err != nil {
						t.Fatalf("the preface a byte at a time: %v", err)
					}
					if _, ok := f.(*http2.SettingsFrame); !ok {
						t.Fatalf("the preface a byte at a time: first frame %v; want SETTINGS", f)
					}
				}
			})
		})
	}
}

// request opens stream id with a GET for / with extra fields.
func (a *attacker) request(id uint32, extra []hpack.HeaderField) error {
	a.hbuf.Reset()
	for _, f := range append(requestFields("/"), extra...) {
		_ = a.enc.WriteField(f)
	}
	block := a.hbuf.Bytes()
	// Frames of 16 KiB at most (SETTINGS_MAX_FRAME_SIZE's floor).
	const max = 16 << 10
	first := block[:min(len(block), max)]
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: true, EndHeaders: len(block) <= max}); err != nil {
		return err
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), max)
		if err := a.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}
