package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/latchgw/latch/policy"
)

// The fast path. Most of a gateway's traffic is GET, HEAD and OPTIONS
// without a body; for those latch writes the request straight from the
// client's parsed headers to a pooled backend connection and parses the
// response head straight into the client's response, on the handler's
// goroutine. ReverseProxy clones the request, its headers and the
// response's, and net/http's Transport runs two goroutines per connection:
// on a loaded machine that bookkeeping costs more than the proxying.
// Everything else — request bodies, upgrades, Expect, absolute-form URIs —
// goes through ReverseProxy, which handles every corner of HTTP/1.1.
//
// Both paths behave the same to clients and backends: hop-by-hop headers
// and the headers named in Connection are dropped both ways, X-Forwarded-*
// are set by the same trust rules, failures set the same outcome, retries
// and status codes. Interim (1xx) responses are not relayed on the fast
// path (ReverseProxy relays 103 Early Hints).

// fastPath reports whether r can take the fast path.
func fastPath(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	return r.ContentLength == 0 && (r.Body == nil || r.Body == http.NoBody) && r.ProtoMajor == 1 &&
		len(r.RequestURI) > 0 && r.RequestURI[0] == '/' &&
		r.Header["Upgrade"] == nil && r.Header["Expect"] == nil && r.Header["Transfer-Encoding"] == nil &&
		cleanQuery(r.URL.RawQuery)
}

// cleanQuery reports whether a query has nothing ReverseProxy would drop:
// a ';' or a malformed %-escape (the parameter smuggling of CVE-2022-2880).
// Such requests take ReverseProxy's path, so both paths forward the same.
func cleanQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// errBadResponse is a backend answer latch will not relay.
var errBadResponse = errors.New("malformed response from backend")

// maxHeadBytes bounds a backend's response head (status line, headers).
const maxHeadBytes = 64 << 10

// forward sends one attempt of a fast-path request to st.backend and
// relays the answer, setting st as ReverseProxy's hooks do on the other path.
func (g *Gateway) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, st *reqState) {
	fresh := false
	for {
		c, err := g.upstream.conn(ctx, st.backend.Addr, fresh)
		if err != nil {
			g.attemptFailed(ctx, w, st, err)
			return
		}
		err = g.exchange(ctx, w, r, st, c)
		if err == nil {
			return
		}
		c.close()
		var se staleError
		if errors.As(err, &se) && c.reused && !fresh && ctx.Err() == nil {
			// The backend closed the idle connection before this request
			// reached it: send it again on a new connection (safe methods).
			fresh = true
			continue
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		g.attemptFailed(ctx, w, st, err)
		return
	}
}

// exchange runs the request over c. An error means nothing was written to
// the client (and c must be closed); after that, it handles every failure
// itself.
func (g *Gateway) exchange(ctx context.Context, w http.ResponseWriter, r *http.Request, st *reqState, c *upConn) error {
	u := g.upstream
	if u.headerTimeout > 0 {
		_ = c.SetDeadline(u.now().Add(u.headerTimeout))
	}
	stop := c.watch(ctx)
	if err := g.writeRequest(c, r, st); err != nil {
		stop()
		return err
	}
	code, err := c.readHead(r.Method)
	if err != nil {
		stop()
		return c.headError(ctx, err)
	}
	_ = c.SetDeadline(time.Time{})
	if ctx.Err() != nil {
		_ = c.SetDeadline(aLongTimeAgo) // a cancellation raced with clearing the deadline
	}
	st.upstream = time.Since(st.start)

	if st.rt.spec.IsFailure(code) {
		st.outcome = policy.Failure
	}
	if st.canRetry && st.rt.spec.RetriesOn(code) {
		stop()
		st.retryable = true
		st.err = errRetryStatus
		c.close() // its body is not wanted
		return nil
	}

	h := w.Header()
	c.copyHeader(h)
	g.commitSession(h, r, st)
	st.status = code
	w.WriteHeader(code)

	keep, err := c.copyBody(ctx, w, st)
	if !stop() {
		keep = false // the cancellation poisoned the connection's deadline
	}
	if err != nil {
		g.log.Warn("relaying backend response failed", "route", st.rt.name, "backend", st.backend.ID, "err", err)
		st.outcome = policy.Failure
		st.abort = true // the client got a cut response: close its connection
		c.close()
		return nil
	}
	if keep {
		c.pool.put(c)
	} else {
		c.close()
	}
	return nil
}

// writeRequest writes r's head to the backend: the client's headers minus
// hop-by-hop ones, plus X-Forwarded-* (by the trust rules of rewrite).
func (g *Gateway) writeRequest(c *upConn, r *http.Request, st *reqState) error {
	bw := c.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if st.rt.spec.Strips() {
		u := *r.URL
		u.Path = st.rt.stripPrefix(r.URL.Path)
		if r.URL.RawPath != "" {
			u.RawPath = st.rt.stripPrefix(r.URL.RawPath)
		}
		bw.WriteString(u.RequestURI())
	} else {
		bw.WriteString(r.RequestURI)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if r.Host != "" {
		bw.WriteString(r.Host)
	} else {
		bw.WriteString(st.backend.Addr) // an HTTP/1.0 client may send none; as ReverseProxy does
	}
	bw.WriteString("\r\n")
	connection := r.Header["Connection"]
	trailers := false
	for k, vv := range r.Header {
		switch k {
		case "Host", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		case "Te":
			trailers = headerHasToken(vv, "trailers")
			continue
		}
		if hopByHop(k) || (listedIn(connection, k) && k != "X-Request-Id") {
			continue // (latch's request id is end to end whatever the client says)
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return fmt.Errorf("request header %s: invalid value", k) // not sent: c is closed
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if trailers {
		bw.WriteString("Te: trailers\r\n")
	}
	ip := r.RemoteAddr
	if i := strings.LastIndexByte(ip, ':'); i >= 0 {
		ip = strings.TrimSuffix(strings.TrimPrefix(ip[:i], "["), "]")
	}
	proto, host := "http", r.Host
	if r.TLS != nil {
		proto = "https"
	}
	bw.WriteString("X-Forwarded-For: ")
	if g.trustedPeer(r) {
		// Keep the trusted proxy's chain and append its address to it.
		for _, prior := range r.Header["X-Forwarded-For"] {
			if validFieldValue(prior) {
				bw.WriteString(prior)
				bw.WriteString(", ")
			}
		}
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			proto = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" && validFieldValue(h) {
			host = h
		}
	}
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(host)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(proto)
	bw.WriteString("\r\n\r\n")
	if err := bw.Flush(); err != nil {
		if isTimeout(err) {
			return err
		}
		return staleError{err} // nothing was answered: see forward
	}
	return nil
}

// field is one parsed response header line.
type field struct{ key, value string }

// readHead reads the backend's final response head into c.fields and
// returns its status code. Interim 1xx responses are skipped.
func (c *upConn) readHead(method string) (int, error) {
	if _, err := c.br.Peek(1); err != nil {
		if isTimeout(err) {
			return 0, err // slow, not stale: the request must not be sent again
		}
		return 0, staleError{err} // closed (or reset) before answering
	}
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
		if len(buf) > maxHeadBytes {
			return "", fmt.Errorf("%w: head larger than %d bytes", errBadResponse, maxHeadBytes)
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
	if err != nil || code < 100 {
		return 0, fmt.Errorf("%w: status %q", errBadResponse, truncate(status))
	}
	for {
		line, rest = nextLine(rest)
		if line == "" {
			return code, nil
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !validFieldName(k) {
			// Covers obsolete line folding too (a line starting with
			// whitespace), which RFC 9112 lets a proxy reject.
			return 0, fmt.Errorf("%w: header line %q", errBadResponse, truncate(line))
		}
		v = strings.Trim(v, " \t")
		if !validFieldValue(v) {
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
			closing = closing || headerHasToken([]string{f.value}, "close")
			keepAlive = keepAlive || headerHasToken([]string{f.value}, "keep-alive")
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
		case hopByHop(f.key), listedIn(connection, f.key):
			continue
		case f.key == "Content-Length" && c.kind != bodyLength && c.kind != bodyNone:
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
func (c *upConn) copyBody(ctx context.Context, w http.ResponseWriter, st *reqState) (keep bool, err error) {
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
				// The client left: not the backend's failure.
				st.outcome, st.status, st.abort = policy.Ignored, statusClientClosed, true
				return false, nil
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				// The client left: not the backend's failure.
				st.outcome, st.status, st.abort = policy.Ignored, statusClientClosed, true
				return false, nil
			}
			// A route timeout (ctx's deadline) or a backend failure:
			// either way the response is cut short.
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
		if size += len(line); size > maxHeadBytes {
			return fmt.Errorf("%w: trailers larger than %d bytes", errBadResponse, maxHeadBytes)
		}
		s := strings.TrimRight(string(bytes.TrimRight(line, "\n")), "\r")
		if s == "" {
			return nil
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok || !validFieldName(k) {
			return fmt.Errorf("%w: trailer line %q", errBadResponse, truncate(s))
		}
		v = strings.Trim(v, " \t")
		if k = canonicalKey(k); !validFieldValue(v) || hopByHop(k) {
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
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", errHeaderTimeout, err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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

// hopByHop reports the headers that concern one connection only (RFC 9110
// §7.6.1), as ReverseProxy removes them.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listedIn reports whether a Connection header names k.
func listedIn(connection []string, k string) bool {
	for _, v := range connection {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

// headerHasToken reports whether a comma-separated header lists tok.
func headerHasToken(vv []string, tok string) bool {
	return listedIn(vv, tok)
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validFieldValue rejects the bytes that could end or corrupt a header line.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '\r' || b == '\n' || b == 0 {
			return false
		}
	}
	return true
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
