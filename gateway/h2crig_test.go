package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The raw HTTP/2 client of the h2c tests (h2cabuse_test.go,
// h2climits_test.go): frames written one by one with x/net/http2's Framer.

// attacker is one raw HTTP/2 connection: the client preface and SETTINGS
// written, its server's frames read in the background.
type attacker struct {
	c       net.Conn
	fr      *http2.Framer // writes
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	written atomic.Int64
	done    chan struct{} // the reader saw the connection end

	mu       sync.Mutex
	goaway   string
	rstCount int
	statuses map[uint32]string
	readErr  error
}

// countingWriter counts what the attacker writes.
type countingWriter struct {
	w net.Conn
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// dialAttacker connects to addr, exchanges SETTINGS and, with read,
// keeps reading the server's frames; without, it reads nothing more (the
// floods: what the server answers stays in the socket).
func dialAttacker(t *testing.T, addr string, read bool) *attacker {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// Small buffers: what the server refuses shows in bytes written, not
	// in what the kernels hold.
	tc := c.(*net.TCPConn)
	_ = tc.SetWriteBuffer(16 << 10)
	_ = tc.SetReadBuffer(16 << 10)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	a := &attacker{c: c, done: make(chan struct{}), statuses: map[uint32]string{}}
	a.fr = http2.NewFramer(countingWriter{c, &a.written}, nil)
	a.enc = hpack.NewEncoder(&a.hbuf)
	if _, err := io.WriteString(countingWriter{c, &a.written}, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS, ACKed: a server closes a connection that
	// leaves them unacknowledged.
	fr := http2.NewFramer(nil, c)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			break
		}
	}
	if err := a.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if read {
		go a.read(fr)
	}
	return a
}

// read reads the server's frames until the connection ends: it ACKs the
// server's SETTINGS and notes GOAWAYs, resets and response statuses.
func (a *attacker) read(fr *http2.Framer) {
	defer close(a.done)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			a.mu.Lock()
			a.readErr = err
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				a.mu.Unlock()
				_ = a.fr.WriteSettingsAck()
				continue
			}
		case *http2.GoAwayFrame:
			a.goaway = f.ErrCode.String()
			if d := f.DebugData(); len(d) > 0 {
				a.goaway += " " + string(d)
			}
		case *http2.RSTStreamFrame:
			a.rstCount++
		case *http2.MetaHeadersFrame:
			a.statuses[f.StreamID] = f.PseudoValue("status")
		}
		a.mu.Unlock()
	}
}

func (a *attacker) ended() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// waitEnd waits up to d for the server to end the connection.
func (a *attacker) waitEnd(d time.Duration) {
	select {
	case <-a.done:
	case <-time.After(d):
	}
}

func (a *attacker) goAway() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.goaway
}

func (a *attacker) rsts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rstCount
}

func (a *attacker) status(id uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statuses[id]
}

// outcome says what the server sent and whether it closed.
func (a *attacker) outcome() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	codes := map[string]int{}
	for _, s := range a.statuses {
		codes[s]++
	}
	s := fmt.Sprintf("%d streams reset, statuses %v", a.rstCount, codes)
	if a.goaway != "" {
		s += ", GOAWAY " + a.goaway
	}
	if a.ended() {
		s += ", connection closed"
	} else {
		s += ", connection open"
	}
	return s
}

// requestFields are a GET's pseudo-header fields.
func requestFields(path string) []hpack.HeaderField {
	return []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "latch.test"}, {Name: ":path", Value: path}}
}

// block encodes a GET's header block (the connection's encoder).
func (a *attacker) block(path string) []byte {
	a.hbuf.Reset()
	for _, f := range requestFields(path) {
		_ = a.enc.WriteField(f)
	}
	return append([]byte(nil), a.hbuf.Bytes()...)
}

// headers opens stream id with a GET for path.
func (a *attacker) headers(id uint32, path string, end bool) error {
	return a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: a.block(path), EndStream: end, EndHeaders: true})
}

// literalFields is n bytes of header block: fields "x-c: ccc…" as
// literals never indexed, each 1,000 bytes long.
func literalFields(n int) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for buf.Len() < n-1100 {
		_ = enc.WriteField(hpack.HeaderField{Name: "x-c", Value: strings.Repeat("c", 1000), Sensitive: true})
	}
	return buf.Bytes()
}
