package h1

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// response is the connection's http.ResponseWriter, reused per request.
// Its output buffer comes from the pool on the first write and goes back
// after the response. The head waits until the handler writes more than
// one buffer, flushes or returns: a short body gets a Content-Length.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	status        int // the final status once WriteHeader ran (0: not yet)
	committed     bool
	chunked       bool
	head          bool  // a HEAD request: the body is counted, not sent
	length        int64 // Content-Length the handler set, or -1
	written       int64
	closeAfter    bool
	handlerDone   bool
	expect        bool
	wroteContinue bool
	refused       bool // the request's body was malformed: the handler's output is dropped

	out []byte // buffered output: before the commit, only body bytes
}

func (w *response) reset(req *http.Request, f framing) {
	if w.header == nil {
		w.header = http.Header{}
	}
	clear(w.header)
	*w = response{c: w.c, req: req, header: w.header, length: -1, head: req.Method == "HEAD",
		closeAfter: f.close, expect: f.expect}
}

// release returns the output buffer (between requests).
func (w *response) release() {
	if w.out != nil {
		putBuf(w.out)
		w.out = nil
	}
	clear(w.header)
	w.req = nil
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.status != 0 || w.c.hijacked {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints, say): sent now, with the headers
		// set so far, as net/http does.
		if code == http.StatusContinue {
			w.writeContinue()
			return
		}
		w.flushOut()
		w.out = appendHead(w.ensureOut(), w.req.ProtoMinor >= 1, code, w.header, nil)
		w.flushOut()
		return
	}
	if pe := w.c.body.malformed.Load(); pe != nil {
		w.refuse(pe)
		return
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, ok := parseLength(cl); ok {
			w.length = n
		} else {
			w.header.Del("Content-Length") // net/http drops a bad one too
		}
	}
}

// refuse answers a request whose body framing proved malformed before the
// response began, whatever the handler (a proxy that got a body error from
// its transport) meant to send: the parse error's status (400), and the
// connection closes. The client sent the bad bytes; it is told so, as it
// is for a bad head.
func (w *response) refuse(pe *ParseError) {
	ids := w.header["X-Request-Id"]
	clear(w.header)
	if ids != nil {
		w.header["X-Request-Id"] = ids
	}
	msg := itoa(pe.Status) + " " + http.StatusText(pe.Status) + ": " + pe.Detail
	w.header["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.status, w.refused, w.closeAfter = pe.Status, true, true
	w.length, w.written = int64(len(msg)), int64(len(msg))
	w.header["Content-Length"] = []string{itoa(len(msg))}
	w.out = append(w.ensureOut(), msg...)
}

var (
	// ErrBodyNotAllowed and ErrContentLength are net/http's.
	ErrBodyNotAllowed = http.ErrBodyNotAllowed
	ErrContentLength  = http.ErrContentLength
	errHijacked       = http.ErrHijacked
)

func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, errHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.refused {
		return len(p), nil
	}
	if !bodyAllowed(w.status) {
		return 0, ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, ErrContentLength
	}
	w.written += int64(len(p))
	if w.head {
		return len(p), nil
	}
	if !w.committed {
		if w.length < 0 && len(w.out)+len(p) <= bufSize {
			w.out = append(w.ensureOut(), p...) // may yet get a Content-Length
			return len(p), nil
		}
		w.commit(p)
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *response) writeBody(p []byte) error {
	if w.chunked {
		if len(p) == 0 {
			return nil
		}
		w.out = append(strconv.AppendInt(w.out, int64(len(p)), 16), '\r', '\n')
	}
	if len(w.out)+len(p) > bufSize {
		if err := w.flushOut(); err != nil {
			return err
		}
	}
	if len(p) > bufSize {
		if _, err := w.c.io.Write(p); err != nil {
			return w.fail(err)
		}
	} else {
		w.out = append(w.ensureOut(), p...)
	}
	if w.chunked {
		w.out = append(w.out, '\r', '\n')
	}
	return nil
}

func (w *response) ensureOut() []byte {
	if w.out == nil {
		w.out = getBuf()[:0]
	}
	return w.out
}

// flushOut writes the buffered output to the socket.
func (w *response) flushOut() error {
	if len(w.out) == 0 {
		return nil
	}
	_, err := w.c.io.Write(w.out)
	w.out = w.out[:0]
	if err != nil {
		return w.fail(err)
	}
	return nil
}

// fail records a write error: the client is gone, the connection closes.
func (w *response) fail(err error) error {
	w.closeAfter = true
	return err
}

// Flush sends the head and what is buffered (http.Flusher).
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush with its error (for http.ResponseController).
func (w *response) FlushError() error {
	if w.c.hijacked {
		return errHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(nil)
	}
	return w.flushOut()
}

// Hijack hands the connection to the handler (http.Hijacker).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.c.hijacked {
		return nil, nil, errHijacked
	}
	if w.committed || len(w.out) > 0 {
		if !w.committed {
			w.commit(nil)
		}
		if err := w.flushOut(); err != nil {
			return nil, nil, err
		}
	}
	return w.c.hijack()
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// writeContinue sends "100 Continue" once, if the client waits for it and
// the response has not started.
func (w *response) writeContinue() {
	if !w.expect || w.wroteContinue || w.committed {
		return
	}
	w.wroteContinue = true
	_, _ = w.c.io.Write(continueLine)
}

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// commit decides the framing and puts the head in front of the body
// bytes buffered so far; next is the write that made it commit (for
// Content-Type sniffing when nothing was buffered).
func (w *response) commit(next []byte) {
	w.committed = true
	h := w.header
	req := w.req
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if te := h.Get("Transfer-Encoding"); te != "" {
		if strings.EqualFold(te, "chunked") {
			w.length = -1
			h.Del("Content-Length")
		} else {
			h.Del("Transfer-Encoding") // "identity": close-delimited
			w.closeAfter = true
		}
	}
	if httpgrammar.ListHas(h["Connection"], "close") {
		w.closeAfter = true
	}
	if w.c.srv.closing.Load() {
		w.closeAfter = true
	}
	if b := &w.c.body; w.handlerDone && !b.done && (w.expect && !w.wroteContinue || !b.chunked && b.remaining > maxDiscard) {
		w.closeAfter = true // the unread body will not be drained
	}
	body := w.out
	var extra [4]string // pairs of (key, value) lines added to the head
	n := 0
	add := func(k, v string) { extra[n], extra[n+1] = k, v; n += 2 }
	addLength := false
	if !bodyAllowed(w.status) {
		h.Del("Transfer-Encoding")
	} else if w.length < 0 {
		switch {
		case w.handlerDone && (!w.head || w.written > 0):
			w.length = w.written
			addLength = true
		case w.head:
		case req.ProtoMajor == 1 && req.ProtoMinor >= 1:
			if h.Get("Transfer-Encoding") == "" {
				add("Transfer-Encoding", "chunked")
			}
			w.chunked = true
		default:
			w.closeAfter = true // HTTP/1.0, length unknown: the close ends it
		}
	}
	if len(body) > 0 {
		next = body
	}
	if _, ok := h["Content-Type"]; !ok && len(next) > 0 && bodyAllowed(w.status) && h.Get("Transfer-Encoding") == "" {
		h.Set("Content-Type", http.DetectContentType(next))
	}
	if req.ProtoMinor == 0 && w.length < 0 {
		w.closeAfter = true // HTTP/1.0 keeps the connection only with a length sent
	}
	if req.ProtoMinor == 0 && !w.closeAfter {
		h.Set("Connection", "keep-alive")
	} else if w.closeAfter && !httpgrammar.ListHas(h["Connection"], "close") {
		h.Set("Connection", "close")
	}
	if _, ok := h["Date"]; !ok {
		add("Date", httpDate())
	}
	w.out = appendHead(getBuf()[:0], req.ProtoMinor >= 1, w.status, h, extra[:n])
	if addLength {
		w.out = append(strconv.AppendInt(append(w.out[:len(w.out)-2], "Content-Length: "...), w.length, 10), "\r\n\r\n"...)
	}
	if len(body) > 0 {
		chunked := w.chunked
		w.chunked = false // body holds raw bytes: frame them now
		if chunked {
			w.out = append(strconv.AppendInt(w.out, int64(len(body)), 16), '\r', '\n')
		}
		if len(w.out)+len(body) > bufSize {
			_ = w.flushOut()
		}
		w.out = append(w.out, body...)
		if chunked {
			w.out = append(w.out, '\r', '\n')
		}
		w.chunked = chunked
	}
	if body != nil {
		putBuf(body)
	}
}

// finish completes the response after the handler returned and reports
// whether the connection can serve another request.
func (w *response) finish() bool {
	w.handlerDone = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(nil)
	}
	if w.chunked {
		w.out = append(w.ensureOut(), '0', '\r', '\n')
		w.out = appendTrailers(w.out, w.header)
		w.out = append(w.out, '\r', '\n')
	}
	err := w.flushOut()
	if w.out != nil {
		putBuf(w.out) // back to the pool now, even if a pipelined request follows
		w.out = nil
	}
	if err != nil {
		return false
	}
	if w.length >= 0 && w.written < w.length && !w.head && bodyAllowed(w.status) {
		return false // short of its Content-Length: the client must see the close
	}
	return !w.closeAfter
}

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == 204 || status == 304)
}

// appendHead appends the status line (HTTP/1.1, or HTTP/1.0 for an
// HTTP/1.0 request) and fields: names that are not
// tokens are skipped, line breaks in values become spaces (as net/http),
// trailer fields are left for after the body.
func appendHead(b []byte, is11 bool, status int, h http.Header, extra []string) []byte {
	if is11 {
		b = append(b, statusLine(status)...)
	} else {
		// HTTP/1.0 clients get an HTTP/1.0 status line, as from net/http.
		b = append(append(b, "HTTP/1.0"...), statusLine(status)[len("HTTP/1.1"):]...)
	}
	trailers := h["Trailer"]
	for k, vv := range h {
		if !httpgrammar.IsToken(k) || strings.HasPrefix(k, http.TrailerPrefix) || len(trailers) > 0 && k != "Trailer" && httpgrammar.ListHas(trailers, k) {
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	for i := 0; i < len(extra); i += 2 {
		b = appendField(b, extra[i], extra[i+1])
	}
	return append(b, '\r', '\n')
}

func appendField(b []byte, k, v string) []byte {
	b = append(append(b, k...), ':', ' ')
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return append(b, '\r', '\n')
}

// appendTrailers writes the fields declared in Trailer, and those set
// with http.TrailerPrefix, after the last chunk.
func appendTrailers(b []byte, h http.Header) []byte {
	for k, vv := range h {
		name, prefixed := strings.CutPrefix(k, http.TrailerPrefix)
		if !prefixed && (k == "Trailer" || !httpgrammar.ListHas(h["Trailer"], k)) || !httpgrammar.IsToken(name) {
			continue
		}
		for _, v := range vv {
			b = appendField(b, name, v)
		}
	}
	return b
}

// statusLines holds the status line of every code from 100 to 599, built
// once at init and only read after: served concurrently, a table filled
// on first use would be written while other connections read it.
var statusLines [600]string

// statusLine is code's HTTP/1.1 status line; codes past 599 (allowed,
// and rare) are built per call.
func statusLine(code int) string {
	if code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return makeStatusLine(code)
}

func makeStatusLine(code int) string {
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
}

func init() {
	for code := 100; code < len(statusLines); code++ {
		statusLines[code] = makeStatusLine(code)
	}
}

// httpDate is the current time for the Date field, formatted once a second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

var _ interface {
	http.ResponseWriter
	http.Flusher
	http.Hijacker
} = (*response)(nil)
