package netns

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Exchange is one request a push-back test writes on the wire, byte for
// byte as it chooses, and the answer it wants from an Echo behind the
// proxy under test.
type Exchange struct {
	Method, Path, Host string
	Header             [][2]string // end-to-end fields, in order (X-Pad-*, X-Test-*, Cookie)
	Body               []byte
	Chunked            bool // the body chunked (else Content-Length when it has one)
	Expect100          bool // send the head, wait for 100 Continue, then the body
	// The response asked of the Echo: Size bytes of Pattern(Seed, Size),
	// chunked or not; an X-Resp-Pad header of HPad bytes.
	Size        int
	Seed        uint64
	RespChunked bool
	HPad        int
}

// Target is the request target, with the Echo's query.
func (x *Exchange) Target() string {
	t := fmt.Sprintf("%s?size=%d&seed=%d&hpad=%d", x.Path, x.Size, x.Seed, x.HPad)
	if x.RespChunked {
		t += "&chunked=1"
	}
	return t
}

func (x *Exchange) header() http.Header {
	h := http.Header{}
	for _, f := range x.Header {
		h.Add(f[0], f[1])
	}
	return h
}

// head is the request's head on the wire.
func (x *Exchange) head() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", x.Method, x.Target(), x.Host)
	for _, f := range x.Header {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	switch {
	case x.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case len(x.Body) > 0 || x.Method == "POST" || x.Method == "PUT":
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(x.Body))
	}
	if x.Expect100 {
		b.WriteString("Expect: 100-continue\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// body is the request's body on the wire: chunked in pieces of uneven
// sizes (1 byte, 10, 4099, 65536, ...) so a parser meets every case.
func (x *Exchange) body() []byte {
	if !x.Chunked {
		return x.Body
	}
	var b bytes.Buffer
	sizes := []int{1, 10, 4099, 65536, 300000}
	rest := x.Body
	for i := 0; len(rest) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(rest))
		fmt.Fprintf(&b, "%x\r\n", n)
		b.Write(rest[:n])
		b.WriteString("\r\n")
		rest = rest[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// check reads x's response from br and compares it with what was sent and
// asked for.
func (x *Exchange) check(resp *http.Response) error {
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading response body (%d bytes in): %w", len(got), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d, want 200 (body %.200q)", resp.StatusCode, got)
	}
	if want := RequestDigest(x.Method, x.Target(), x.header(), x.Body); resp.Header.Get("X-Req-Digest") != want {
		return fmt.Errorf("the backend got other bytes than were sent: X-Req-Body %s (sent %d)", resp.Header.Get("X-Req-Body"), len(x.Body))
	}
	if len(got) != x.Size {
		return fmt.Errorf("response body %d bytes, want %d", len(got), x.Size)
	}
	want := sha256.Sum256(Pattern(x.Seed, x.Size))
	if sum := sha256.Sum256(got); sum != want || resp.Header.Get("X-Resp-Digest") != hex.EncodeToString(want[:]) {
		return errors.New("response body differs from what the backend sent")
	}
	if x.HPad > 0 && resp.Header.Get("X-Resp-Pad") != PadText(x.HPad) {
		return fmt.Errorf("X-Resp-Pad: %d bytes, differs from the backend's %d", len(resp.Header.Get("X-Resp-Pad")), x.HPad)
	}
	return nil
}

// Client sends Exchanges from a host to a proxy, on connections of its
// own, paced as it says, and checks every answer byte for byte.
type Client struct {
	Host        *Host
	Addr        string // the proxy
	Sock        SockOpts
	Read, Write Pace
	// Stall, when set, stops each request for so long mid-head and again
	// mid-body: a client that stalls (what no breaker should count).
	Stall   time.Duration
	Timeout time.Duration // for the whole of one Do (default 20 s)
	// TLS, when set, speaks HTTPS to the proxy; the paces apply to the
	// encrypted bytes.
	TLS *tls.Config
}

// wireConn is a client connection: IO on it (TLS over the paced conn, or
// the paced conn itself), pace controls on pc.
type wireConn struct {
	net.Conn
	pc *PacedConn
}

func (c *Client) dial(ctx context.Context) (*wireConn, error) {
	conn, err := c.Host.Dial(ctx, c.Addr, c.Sock)
	if err != nil {
		return nil, err
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	pc := Paced(conn, c.Read, c.Write)
	if c.TLS == nil {
		return &wireConn{Conn: pc, pc: pc}, nil
	}
	tc := tls.Client(pc, c.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		pc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return &wireConn{Conn: tc, pc: pc}, nil
}

// Do sends xs pipelined on one connection (every request written while
// the answers are read) and checks each answer. An Exchange with
// Expect100 waits for 100 Continue before its body, so it goes alone.
func (c *Client) Do(ctx context.Context, xs ...*Exchange) error {
	pc, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer pc.Close()
	if len(xs) == 1 && xs[0].Expect100 {
		return c.expect(pc, xs[0])
	}
	br := newReader(pc)
	werr := make(chan error, 1)
	go func() {
		for _, x := range xs {
			if err := c.send(pc, x.head(), x.body()); err != nil {
				werr <- fmt.Errorf("writing %s %s: %w", x.Method, x.Path, err)
				return
			}
		}
		werr <- nil
	}()
	for i, x := range xs {
		resp, err := http.ReadResponse(br, &http.Request{Method: x.Method})
		if err != nil {
			pc.Close()
			return errors.Join(fmt.Errorf("reading response %d: %w", i+1, err), <-werr)
		}
		if err := x.check(resp); err != nil {
			pc.Close()
			return fmt.Errorf("response %d: %w", i+1, err)
		}
	}
	return <-werr
}

// send writes one request, stalling mid-head and mid-body if asked.
func (c *Client) send(wc *wireConn, head, body []byte) error {
	wc.pc.ResetWrite()
	if c.Stall > 0 { // (under TLS, near those offsets: records add a little)
		wc.pc.wr.Stalls = []int64{int64(len(head) / 2), int64(len(head) + len(body)/2)}
		wc.pc.wr.StallFor = c.Stall
	}
	if _, err := wc.Write(append(head[:len(head):len(head)], body...)); err != nil {
		return err
	}
	return nil
}

func (c *Client) expect(pc *wireConn, x *Exchange) error {
	br := newReader(pc)
	if _, err := pc.Write(x.head()); err != nil {
		return fmt.Errorf("writing head: %w", err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: x.Method})
	if err != nil {
		return fmt.Errorf("reading 100 Continue: %w", err)
	}
	if resp.StatusCode != http.StatusContinue {
		return fmt.Errorf("status %d after the head, want 100 Continue", resp.StatusCode)
	}
	if _, err := pc.Write(x.body()); err != nil {
		return fmt.Errorf("writing body: %w", err)
	}
	if resp, err = http.ReadResponse(br, &http.Request{Method: x.Method}); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	return x.check(resp)
}

// Upgrade sends x (a GET with an Upgrade header), wants 101, then writes
// data and wants it echoed back whole.
func (c *Client) Upgrade(ctx context.Context, x *Exchange, data []byte) error {
	pc, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer pc.Close()
	br := newReader(pc)
	if err := c.send(pc, x.head(), nil); err != nil {
		return fmt.Errorf("writing head: %w", err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: x.Method})
	if err != nil {
		return fmt.Errorf("reading 101: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("status %d, want 101", resp.StatusCode)
	}
	werr := make(chan error, 1)
	go func() { _, err := pc.Write(data); werr <- err }()
	got := make([]byte, len(data))
	if n, err := io.ReadFull(br, got); err != nil {
		return fmt.Errorf("echo: %d of %d bytes back: %w", n, len(data), err)
	}
	if !bytes.Equal(got, data) {
		return errors.New("echo: the bytes back differ from those sent")
	}
	return <-werr
}

// PadField is a header field of n bytes of value (name X-Pad-<n>).
func PadField(n int) [2]string { return [2]string{"X-Pad-" + strconv.Itoa(n), PadText(n)} }

func readResponse(pc net.Conn) (*http.Response, error) {
	return http.ReadResponse(newReader(pc), &http.Request{Method: "GET"})
}
