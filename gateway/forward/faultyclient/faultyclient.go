// Package faultyclient sends requests whose bodies the client breaks, the
// classes of issue 17, for tests of latch's attribution of failures: each
// must be the client's fault (400 or 408, counted by cause) and never a
// backend's.
package faultyclient

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Class is one way a client breaks its request body.
type Class struct {
	Name string
	// Cause is the latch_client_errors_total cause latch must count.
	Cause string
	// Want is the status the client must get (0: none; it reset the
	// connection).
	Want int
	// head is the request's framing header; body what is sent of the body,
	// after which the client half-closes (halfClose), resets (reset) or
	// waits for the answer.
	head, body       string
	halfClose, reset bool
}

// Classes are the client-fault classes, in table order. Slow bodies end
// with a timeout: the server's read timeout or the route's must be set.
var Classes = []Class{
	{Name: "body truncated, half-close", Cause: "body_truncated", Want: http.StatusBadRequest,
		head: "Content-Length: 1000", body: "only-these-bytes", halfClose: true},
	{Name: "bad chunk size", Cause: "body_framing", Want: http.StatusBadRequest,
		head: "Transfer-Encoding: chunked", body: "zz\r\nhello\r\n0\r\n\r\n"},
	{Name: "reset mid-upload", Cause: "body_reset", Want: 0,
		head: "Content-Length: 100000", body: strings.Repeat("r", 4096), reset: true},
	{Name: "slow body past timeout", Cause: "body_timeout", Want: http.StatusRequestTimeout,
		head: "Content-Length: 1000", body: "a-trickle"},
}

// Send sends one request of class k to addr: POST path on host, with the
// extra header lines (each "Name: value"). It returns the status latch
// answered (0 when the class resets). The request carries Expect:
// 100-continue and its body goes out only after latch's 100 Continue,
// so that latch is reading the body when the client breaks it. wait
// bounds the whole exchange.
func (k Class) Send(addr, host, path string, extra []string, wait time.Duration) (int, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\nExpect: 100-continue\r\n", path, host, k.head)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	code, err := status(br)
	if err != nil {
		return 0, fmt.Errorf("awaiting 100 Continue: %w", err)
	}
	if code != http.StatusContinue {
		return code, fmt.Errorf("got %d before sending the body; want 100 Continue", code)
	}
	if _, err := io.WriteString(c, k.body); err != nil {
		return 0, err
	}
	switch {
	case k.reset:
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		return 0, nil
	case k.halfClose:
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return 0, err
		}
	}
	for {
		code, err := status(br)
		if err != nil || code != http.StatusContinue {
			return code, err
		}
	}
}

// status reads a response head and returns its code.
func status(br *bufio.Reader) (int, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	var code int
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &code); err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if l == "\r\n" {
			break
		}
	}
	if code >= 200 {
		// The rest (a short error body) is not wanted; latch closes the
		// connection after it.
		_, _ = io.Copy(io.Discard, io.LimitReader(br, 1<<16))
	}
	return code, nil
}
