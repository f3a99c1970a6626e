package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The attacks of TestHostileProcess, each a client as a hostile one
// writes it, and what the process's costs are read from.

// procCost is what one latch process holds at a moment: descriptors
// (/proc/PID/fd), goroutines (go_goroutines on its admin listener),
// established connections to the backends (its sockets in
// /proc/PID/net/tcp), resident memory (VmRSS).
type procCost struct {
	fds, goroutines, backend int
	rss                      int64
}

func (c procCost) max(o procCost) procCost {
	return procCost{fds: max(c.fds, o.fds), goroutines: max(c.goroutines, o.goroutines),
		backend: max(c.backend, o.backend), rss: max(c.rss, o.rss)}
}

func (c procCost) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, backend conns %d, RSS %.1f MB", c.fds, c.goroutines, c.backend, float64(c.rss)/(1<<20))
}

// costOf samples process pid, whose admin listener is admin, with
// backends listening on backendPorts.
func costOf(t *testing.T, pid int, admin string, backendPorts map[int]bool) procCost {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid)
	entries, err := os.ReadDir(dir + "/fd")
	if err != nil {
		t.Fatalf("latch's descriptors: %v", err)
	}
	sockets := map[string]bool{}
	for _, e := range entries {
		if l, err := os.Readlink(dir + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			sockets[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	c := procCost{fds: len(entries), goroutines: int(metricValue(t, admin, "go_goroutines"))}
	for _, f := range []string{"/net/tcp", "/net/tcp6"} {
		data, _ := os.ReadFile(dir + f)
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "01" || !sockets[fl[9]] {
				continue
			}
			_, port, _ := strings.Cut(fl[2], ":")
			if p, err := strconv.ParseInt(port, 16, 32); err == nil && backendPorts[int(p)] {
				c.backend++
			}
		}
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			c.rss = kb << 10
		}
	}
	return c
}

// peakCost samples every 100 ms for d and returns the most of each.
func peakCost(t *testing.T, d time.Duration, sample func() procCost) procCost {
	t.Helper()
	p := sample()
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		p = p.max(sample())
	}
	return p
}

// h2Conn is a raw HTTP/2 client connection: it opens streams, acknowledges
// the server's settings, and records the status of each stream answered.
type h2Conn struct {
	tc  net.Conn
	fr  *http2.Framer
	mu  sync.Mutex // writes
	enc *hpack.Encoder
	buf bytes.Buffer

	answered sync.Map // stream id → status
	done     chan struct{}
}

func dialH2(t *testing.T, addr string, roots *x509.CertPool) *h2Conn {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q; want h2", p)
	}
	return newH2Conn(t, tc)
}

// dialH2C is dialH2 over plain TCP, with prior knowledge (server.h2c).
func dialH2C(t *testing.T, addr string) *h2Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return newH2Conn(t, nc)
}

// newH2Conn sends the client preface and settings on tc and reads its
// frames.
func newH2Conn(t *testing.T, tc net.Conn) *h2Conn {
	t.Helper()
	c := &h2Conn{tc: tc, fr: http2.NewFramer(tc, tc), done: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.buf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

func (c *h2Conn) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WriteSettingsAck()
				c.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if st, err := strconv.Atoi(f.PseudoValue("status")); err == nil {
				c.answered.Store(f.StreamID, st)
			}
		case *http2.RSTStreamFrame:
			c.answered.Store(f.StreamID, -int(f.ErrCode)-1)
		}
	}
}

// open opens stream id with a request head; end: no body follows.
func (c *h2Conn) open(id uint32, method, authority, path string, end bool, fields ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Reset()
	all := append([]string{":method", method, ":scheme", "https", ":authority", authority, ":path", path}, fields...)
	for i := 0; i+1 < len(all); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: all[i], Value: all[i+1]})
	}
	return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.buf.Bytes(), EndHeaders: true, EndStream: end})
}

// statuses counts the answers so far by status (negative: reset).
func (c *h2Conn) statuses(into map[int]int) {
	c.answered.Range(func(_, v any) bool {
		into[v.(int)]++
		return true
	})
}

// stalledHandshake opens a TCP connection to addr that sends a TLS record
// header announcing a 16 KB handshake message, and nothing of it.
func stalledHandshake(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, "\x16\x03\x01\x40\x00"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// h1TLS is an HTTP/1.1 connection over TLS that writes raw request heads.
type h1TLS struct {
	c  *tls.Conn
	br *bufio.Reader
}

func dialH1TLS(addr string, roots *x509.CertPool) (*h1TLS, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	return &h1TLS{c: c, br: bufio.NewReader(c)}, nil
}

// do writes head (a whole request without a body) and reads the answer's
// status, its body discarded.
func (h *h1TLS) do(head []byte) (int, error) {
	_ = h.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := h.c.Write(head); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		return resp.StatusCode, io.EOF // latch closes after it
	}
	return resp.StatusCode, nil
}

// bigHead is a GET whose head is size bytes, most of them one field.
func bigHead(host string, size int) []byte {
	start := "GET /big HTTP/1.1\r\nHost: " + host + "\r\nX-Big: "
	pad := size - len(start) - len("\r\n\r\n")
	return []byte(start + strings.Repeat("b", pad) + "\r\n\r\n")
}

// manyFields is a GET with n fields "X: a".
func manyFields(host string, n int) []byte {
	return []byte("GET /many HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Repeat("X: a\r\n", n) + "\r\n")
}
