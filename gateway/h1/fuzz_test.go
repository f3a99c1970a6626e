package h1

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// FuzzDifferential feeds the same bytes, as one client connection, to this
// server and to net/http's, each with a handler that reads the body and
// records the request. They must see the same requests (method, target,
// version, host, fields, body framing, body bytes) — or this server
// rejects where RFC 9112 says to and net/http is lenient (a Kind that is
// stricterKind). Never the other way round: whatever net/http rejects, this
// server rejects too.
func FuzzDifferential(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/x HTTP/1.1\r\nHost: other\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"PUT / HTTP/1.1\r\nHost: h\r\nExpect: \r\nExpect: 100-Continue,\r\nContent-Length: 2\r\n\r\nok",
		"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, magic\r\nContent-Length: 2\r\n\r\nok",
		"GET /%41%2f?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		// Smuggling shapes: each must be rejected.
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		ours := serveOurs(t, data)
		theirs := serveNetHTTP(t, data)
		compareRuns(t, data, ours, theirs)
	})
}

// seen is one request as the handler saw it.
type seen struct {
	Method, RequestURI, URL, Proto, Host string
	Header                               http.Header
	ContentLength                        int64
	TransferEncoding                     []string
	Close                                bool
	Body                                 []byte
	bodyErr                              error
}

// run is what one server made of the connection.
type run struct {
	reqs     []seen
	rejected bool  // it answered 4xx/5xx without the handler
	reason   error // ours: why (a *ParseError)
}

func record(mu *sync.Mutex, out *[]seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		s := seen{Method: r.Method, RequestURI: r.RequestURI, URL: r.URL.String(), Proto: r.Proto, Host: r.Host,
			Header: r.Header.Clone(), ContentLength: r.ContentLength, TransferEncoding: slices.Clone(r.TransferEncoding),
			Close: r.Close, Body: body, bodyErr: err}
		mu.Lock()
		*out = append(*out, s)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}
}

func serveOurs(t *testing.T, data []byte) run {
	var mu sync.Mutex
	var r run
	srv := &Server{Handler: record(&mu, &r.reqs)}
	srv.testHookReject = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		var pe *ParseError
		if errors.As(err, &pe) {
			r.rejected, r.reason = true, err
		}
	}
	c := newMemConn(data)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c2 := newConn(srv, c)
		srv.trackConn(c2, true)
		c2.serve(t.Context())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("our server did not finish the connection for %q", data)
	}
	mu.Lock()
	defer mu.Unlock()
	return r
}

func serveNetHTTP(t *testing.T, data []byte) run {
	var mu sync.Mutex
	var r run
	c := newMemConn(data)
	srv := &http.Server{Handler: record(&mu, &r.reqs), ErrorLog: log.New(io.Discard, "", 0)}
	l := &oneConnListener{conn: c, closed: make(chan struct{})}
	served := make(chan struct{})
	go func() { _ = srv.Serve(l); close(served) }()
	select {
	case <-c.done: // closed, or a rejection written (net/http then sleeps 500ms before closing)
	case <-time.After(10 * time.Second):
		t.Fatalf("net/http did not finish the connection for %q", data)
	}
	_ = srv.Close()
	<-served
	mu.Lock()
	defer mu.Unlock()
	r.rejected = c.rejectedAnswer()
	return r
}

func compareRuns(t *testing.T, data []byte, ours, theirs run) {
	stricter := func(err error) bool {
		var pe *ParseError
		return errors.As(err, &pe) && stricterKind(pe.Kind)
	}
	n := min(len(ours.reqs), len(theirs.reqs))
	for i := 0; i < n; i++ {
		o, th := ours.reqs[i], theirs.reqs[i]
		if (o.bodyErr != nil) != (th.bodyErr != nil) {
			if o.bodyErr != nil && stricter(o.bodyErr) {
				return // ours refused a body net/http took, where RFC 9112 lets it
			}
			t.Fatalf("request %d of %q: body error ours %v, net/http's %v", i, data, o.bodyErr, th.bodyErr)
		}
		if o.bodyErr != nil {
			o.Body, th.Body = nil, nil // how much is read before the error may differ
		}
		ob := o.bodyErr
		o.bodyErr, th.bodyErr = nil, nil
		if !reflect.DeepEqual(o, th) {
			t.Fatalf("request %d of %q differs:\n ours    %+v\n net/http %+v", i, data, o, th)
		}
		if ob != nil {
			return // both refused the body: the connection ends
		}
	}
	switch {
	case len(ours.reqs) > len(theirs.reqs):
		t.Fatalf("%q: we served %d requests, net/http %d (rejected=%v)", data, len(ours.reqs), len(theirs.reqs), theirs.rejected)
	case len(ours.reqs) < len(theirs.reqs):
		if !ours.rejected || !stricter(ours.reason) {
			t.Fatalf("%q: we served %d requests, net/http %d; ours stopped with %v", data, len(ours.reqs), len(theirs.reqs), ours.reason)
		}
	case theirs.rejected && !ours.rejected:
		t.Fatalf("%q: net/http rejected request %d, we did not", data, n)
	case ours.rejected && !theirs.rejected && !stricter(ours.reason) && !truncated(ours.reason):
		// (A head cut short by the end of the stream: net/http answers
		// 400 or nothing depending on its buffer; neither serves it.)
		t.Fatalf("%q: we rejected request %d (%v), net/http did not", data, n, ours.reason)
	}
}

func truncated(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe) && pe.Kind == KindTruncated
}

// memConn is a client connection held in memory: reads give data then
// EOF; writes are kept, to see whether a rejection was answered.
type memConn struct {
	r    *bytes.Reader
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{} // closed on Close, or once a rejection is written
	once sync.Once
}

func newMemConn(data []byte) *memConn {
	return &memConn{r: bytes.NewReader(data), done: make(chan struct{})}
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(p)
	if c.rejectedLocked() {
		c.once.Do(func() { close(c.done) })
	}
	return len(p), nil
}

func (c *memConn) rejectedAnswer() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejectedLocked()
}

func (c *memConn) rejectedLocked() bool {
	b := c.out.Bytes()
	for _, p := range []string{"HTTP/1.1 4", "HTTP/1.1 5", "HTTP/1.0 4", "HTTP/1.0 5"} {
		if bytes.Contains(b, []byte(p)) {
			return true
		}
	}
	return false
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return memAddr("server") }
func (c *memConn) RemoteAddr() net.Addr               { return memAddr("client") }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// oneConnListener accepts conn once, then waits to be closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	taken  bool
	mu     sync.Mutex
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return memAddr("listener") }

func TestDifferentialSeedsExplained(t *testing.T) {
	// The smuggling seeds: net/http takes them, this server must not.
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
	} {
		ours, theirs := serveOurs(t, []byte(raw)), serveNetHTTP(t, []byte(raw))
		if !ours.rejected || len(ours.reqs) != 0 {
			t.Errorf("%q: ours served %d, rejected=%v", raw, len(ours.reqs), ours.rejected)
		}
		if theirs.rejected || len(theirs.reqs) == 0 {
			t.Errorf("%q: net/http rejected it: the seed no longer shows a lenient net/http", raw)
		}
		compareRuns(t, []byte(raw), ours, theirs)
	}
}

// stricterKind reports whether net/http accepts what kind k rejects (RFC
// 9112 tells or allows a server to reject it). KindExpect is stricter in
// part: net/http refuses an Expect whose first line lacks 100-continue
// too, but reads no further than that line's words.
func stricterKind(k Kind) bool {
	switch k {
	case KindExpect, KindTargetForm, KindBareLineBreak, KindObsFold, KindDupLength, KindLengthAndChunked, KindHTTP10Chunked, KindChunkExt, KindTrailer, KindEmptyHost:
		return true
	}
	return false
}
