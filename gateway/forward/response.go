package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// The fast path's response side: the backend's head parsed into the
// client's response, the body framed (RFC 9112) and relayed.

// field is one parsed response header line.
type field struct{ key, value string }

// readHead reads the backend's final response head into c.fields and
// returns its status code. Interim 1xx responses are skipped.
func (c *upConn) readHead(method string) (int, error) {
	if code := c.pending; code != 0 {
		c.pending = 0
		return code, c.frame(method, code)
	}
	if _, err := c.br.Peek(1); err != nil {
		if timeout(err) {
			return 0, err // slow, not stale: the request must not be sent again
		}
		return 0, staleError{err} // closed (or reset) before answering
	}
	c.replied = true
	for interim := 0; ; interim++ {
		head, err := c.readHeadBytes()
		if err != nil {
			return 0, err
		}
		code, err := c.parseHead(head)
		if err != nil {
			return 0, err
		}
		switch {
		case code == http.StatusSwitchingProtocols:
			return 0, fmt.Errorf("%w: 101 to a request that asked for no upgrade", errBadResponse)
		case code < 200 && interim == maxInterim:
			return 0, fmt.Errorf("%w: more than %d interim responses", errBadResponse, maxInterim)
		case code < 200:
			continue // 100 Continue, 103 Early Hints: the final response follows
		}
		return code, c.frame(method, code)
	}
}

// maxInterim bounds the 1xx responses before a final one (as net/http).
const maxInterim = 5

// readHeadBytes reads up to and including the empty line that ends a
// response head, as one string the parsed fields point into.
func (c *upConn) readHeadBytes() (string, error) {
	buf := c.head[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf)+len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		buf = append(buf, line...)
		if max := c.pool.u.maxHead; len(buf) > max {
			return "", fmt.Errorf("%w: head larger than %d bytes", errBadResponse, max)
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			c.head = buf
			return string(buf), nil
		}
	}
}

// parseHead parses a status line and header fields into c.fields.
func (c *upConn) parseHead(head string) (int, error) {
	c.fields = c.fields[:0]
	line, rest := nextLine(head)
	proto, status, ok := strings.Cut(line, " ")
	if !ok || len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return 0, fmt.Errorf("%w: status line %q", errBadResponse, truncate(line))
	}
	switch proto {
	case "HTTP/1.1":
		c.http10 = false
	case "HTTP/1.0":
		c.http10 = true
	default:
		return 0, fmt.Errorf("%w: protocol %q", errBadResponse, truncate(proto))
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 100 || code > 599 {
		// RFC 9110 §15: codes outside 100-599 are invalid; net/http's
		// server panics on them.
		return 0, fmt.Errorf("%w: status %q", errBadResponse, truncate(status))
	}
	for {
		line, rest = nextLine(rest)
		if line == "" {
			return code, nil
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !httpgrammar.IsToken(k) {
			// Covers obsolete line folding too (a line starting with
			// whitespace), which RFC 9112 lets a proxy reject.
			return 0, fmt.Errorf("%w: header line %q", errBadResponse, truncate(line))
		}
		v = strings.Trim(v, " \t")
		if !httpgrammar.SafeFieldValue(v) {
			return 0, fmt.Errorf("%w: header %s has an invalid value", errBadResponse, truncate(k))
		}
		c.fields = append(c.fields, field{canonicalKey(k), v})
	}
}

// bodyKind is how a response's body is delimited.
type bodyKind uint8

const (
	bodyNone    bodyKind = iota // HEAD, 1xx, 204, 304
	bodyLength                  // Content-Length
	bodyChunked                 // Transfer-Encoding: chunked
	bodyClose                   // until the backend closes the connection
)

// frame works out how the body is delimited and whether the connection
// can carry another request (RFC 9112 §6.3, §9.3).
func (c *upConn) frame(method string, code int) error {
	c.kind, c.length = bodyClose, -1
	var te string
	closing, keepAlive := false, false
	for _, f := range c.fields {
		switch f.key {
		case "Connection":
			closing = closing || httpgrammar.ListHas([]string{f.value}, "close")
			keepAlive = keepAlive || httpgrammar.ListHas([]string{f.value}, "keep-alive")
		case "Transfer-Encoding":
			if te != "" {
				te += ","
			}
			te += f.value
		case "Content-Length":
			n, err := strconv.ParseUint(f.value, 10, 63) // digits only: no sign, no space
			if err != nil || (c.length >= 0 && int64(n) != c.length) {
				return fmt.Errorf("%w: Content-Length %q", errBadResponse, truncate(f.value))
			}
			c.length = int64(n)
		}
	}
	c.keep = !closing && (!c.http10 || keepAlive)
	switch {
	case method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		c.kind = bodyNone
	case te != "":
		if !strings.EqualFold(strings.TrimSpace(te), "chunked") {
			// Codings other than a lone chunked: Go's Transport refuses
			// them too, and guessing the end of the body is how a
			// connection desyncs.
			return fmt.Errorf("%w: Transfer-Encoding %q", errBadResponse, truncate(te))
		}
		c.kind = bodyChunked
		if c.http10 || c.length >= 0 {
			// Transfer-Encoding in HTTP/1.0, or with a Content-Length:
			// faulty or ambiguous framing (RFC 9112 §6.1, §6.3). Chunked
			// wins, the length is dropped, the connection is not reused.
			c.keep, c.length = false, -1
		}
	case c.length >= 0:
		c.kind = bodyLength
	default:
		c.keep = false
	}
	return nil
}

// copyHeader adds the response's end-to-end headers to h.
func (c *upConn) copyHeader(h http.Header) {
	var connection []string
	for _, f := range c.fields {
		if f.key == "Connection" {
			connection = append(connection, f.value)
		}
	}
	// One allocation for every value's slice; each has capacity 1, so an
	// append by anyone later reallocates instead of overwriting a neighbour.
	vals := make([]string, len(c.fields))
	for i, f := range c.fields {
		switch {
		case f.key == "Trailer" && c.kind == bodyChunked:
			// Announced trailers stay announced: they follow the body.
		case hopByHop(f.key), httpgrammar.ListHas(connection, f.key):
			continue
		case f.key == "Content-Length" && (c.kind != bodyLength && c.kind != bodyNone || h[f.key] != nil):
			// Not the framing of this body; or a repeat of the one value
			// frame let through: relayed once.
			continue
		}
		vals[i] = f.value
		if prev, ok := h[f.key]; ok {
			h[f.key] = append(prev, f.value)
		} else {
			h[f.key] = vals[i : i+1 : i+1]
		}
	}
}

// copyBody relays the body to w. keep reports whether the connection can
// be reused; err is a failure after the response head went out.
func (c *upConn) copyBody(ctx context.Context, w http.ResponseWriter) (keep bool, err error) {
	var body io.Reader
	switch c.kind {
	case bodyNone:
		return c.keep && c.br.Buffered() == 0, nil
	case bodyLength:
		c.limited = io.LimitedReader{R: c.br, N: c.length}
		body = &c.limited
	case bodyChunked:
		body = httputil.NewChunkedReader(c.br)
	case bodyClose:
		body = c.br
	}
	// Stream (flush as data comes) when the backend did not say how long
	// the body is: server-sent events, long polls, chunked streams.
	stream := c.kind != bodyLength
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	rc := http.NewResponseController(w)
	var n int64
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			n += int64(nr)
			if _, werr := w.Write(buf[:nr]); werr != nil {
				return false, errClientGone
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The client left (ctx cancelled), a route timeout (ctx's
			// deadline) or a backend failure: the response is cut short.
			return false, rerr
		}
	}
	switch c.kind {
	case bodyLength:
		if c.limited.N > 0 {
			return false, fmt.Errorf("backend closed after %d of %d body bytes: %w", n, c.length, io.ErrUnexpectedEOF)
		}
	case bodyChunked:
		if err := c.readTrailers(w.Header()); err != nil {
			return false, err
		}
	case bodyClose:
		return false, nil
	}
	return c.keep && c.br.Buffered() == 0, nil
}

// readTrailers reads the trailer section after a chunked body and hands
// its fields to the client as trailers.
func (c *upConn) readTrailers(h http.Header) error {
	for size := 0; ; {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("reading trailers: %w", err)
		}
		if size += len(line); size > c.pool.u.maxHead {
			return fmt.Errorf("%w: trailers larger than %d bytes", errBadResponse, c.pool.u.maxHead)
		}
		s := strings.TrimRight(string(bytes.TrimRight(line, "\n")), "\r")
		if s == "" {
			return nil
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok || !httpgrammar.IsToken(k) {
			return fmt.Errorf("%w: trailer line %q", errBadResponse, truncate(s))
		}
		v = strings.Trim(v, " \t")
		if k = canonicalKey(k); !httpgrammar.SafeFieldValue(v) || hopByHop(k) {
			continue
		}
		h.Add(http.TrailerPrefix+k, v)
	}
}

// headError turns a failure before the response head into the error the
// attempt reports.
func (c *upConn) headError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if timeout(err) {
		return fmt.Errorf("%w: %w", errHeaderTimeout, err)
	}
	return err
}

func nextLine(s string) (line, rest string) {
	line, rest, _ = strings.Cut(s, "\n")
	return strings.TrimSuffix(line, "\r"), rest
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// commonKeys interns the header names backends send most, so parsing them
// allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Security-Policy", "Content-Type", "Date", "Etag",
		"Expires", "Keep-Alive", "Last-Modified", "Location", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Vary", "Via", "X-Backend-Id",
		"X-Content-Type-Options", "X-Frame-Options", "X-Request-Id", "Access-Control-Allow-Origin"} {
		m[k] = k
	}
	return m
}()

func canonicalKey(k string) string {
	if c, ok := commonKeys[k]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}
