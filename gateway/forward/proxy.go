package forward

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// The ReverseProxy path: upgrades (WebSocket), which need the connection
// handed over after a 101, and routes whose backends speak HTTP/2 (h2.go).
// Its hooks apply the pipeline's rules: Rewrite writes the same head as
// the fast path (writeHead), ModifyResponse and ErrorHandler classify by
// the same functions (answered, failed).

func (f *Forwarder) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      transport{f},
		BufferPool:     copyBuffers,
		ModifyResponse: f.modifyResponse,
		ErrorHandler:   f.errorHandler,
		ErrorLog:       slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
}

// forwardProxy sends the attempt through ReverseProxy. Its Transport reads
// the request body on a goroutine of its own (persistConn.writeLoop), and
// may still be reading once the round trip returned: when the backend
// answered before taking the whole body, the writer goes on reading what
// the client still sends. The server may reuse the body for the
// connection's next request (h1 does: the late reader raced the server's
// discard of the rest and took the next request's bytes), so the body is
// ended before the handler returns: no read of it starts after.
func (f *Forwarder) forwardProxy(w http.ResponseWriter, r *http.Request, x *exchange) {
	if x.body == nil {
		f.rp.ServeHTTP(w, r)
		return
	}
	body := &proxyBody{attemptBody: attemptBody{b: x.body, gen: x.gen}}
	r.Body = body
	defer body.end() // also when ReverseProxy panics (a cut response)
	f.rp.ServeHTTP(w, r)
}

// proxyBody is the ReverseProxy path's request body: an attempt's view of
// the client's body that can be ended under the reads of the Transport's
// goroutine.
type proxyBody struct {
	attemptBody
	mu    sync.Mutex // held by a read in progress
	ended bool
}

var errBodyEnded = errors.New("request body read after its handler returned")

func (p *proxyBody) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return 0, errBodyEnded
	}
	return p.attemptBody.Read(b)
}

// end makes every later Read fail, once the one in progress, if any,
// returned. A read that may be on the client's body (this attempt claimed
// it) can wait for bytes the client sends only once it has its whole
// answer, which may never come (a cut response): it is cut short by an
// expired read deadline, and the server closes the connection over the
// unfinished body after the response. (net/http's server waits for such a
// read before it reuses the connection, up to its read timeout, none by
// default.)
func (p *proxyBody) end() {
	if !p.mu.TryLock() {
		if p.b.state.Load()>>1 == p.gen {
			p.b.cut()
		}
		p.mu.Lock()
	}
	p.ended = true
	p.mu.Unlock()
}

// rewrite points the outbound request at the attempt's backend, with the
// head writeHead builds from the client's request.
func (f *Forwarder) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	out := pr.Out
	u := outboundURL(x.spec, pr.In.URL)
	out.URL.Path, out.URL.RawPath = u.Path, u.RawPath
	out.URL.Scheme = BackendScheme(x.spec)
	out.URL.Host = x.backend.Addr
	out.Host = pr.In.Host // backends see the host the client asked for
	out.Header = make(http.Header, len(pr.In.Header)+3)
	h := head{out: out.Header}
	if err := f.writeHead(&h, pr.In, x); err != nil {
		// Not sent: the transport refuses the request, and ErrorHandler
		// answers 502.
		out.Header = http.Header{"X-Invalid": {"\n"}}
	}
	if out.Body == nil && x.spec.HTTP2() && grpcAnswer(pr.In.Header) {
		// A gRPC call without a message (an HTTP/1.1 client's empty
		// POST; a client stream of none). ReverseProxy sends no body for
		// a Content-Length of 0, and the Transport then ends the stream
		// on its HEADERS frame, which grpc-go's server never notices (it
		// waits for a DATA frame): the call hung until the response
		// timeout. A body of unknown length that is empty makes the
		// Transport end the stream with an empty DATA frame, as gRPC
		// clients do.
		out.Body, out.ContentLength = noMessage{}, 0
	}
}

// noMessage is the empty body of a gRPC call without a message: not
// http.NoBody, which the Transport sends as no body at all.
type noMessage struct{}

func (noMessage) Read([]byte) (int, error) { return 0, io.EOF }
func (noMessage) Close() error             { return nil }

// modifyResponse runs once the backend answered, before anything is
// written to the client.
func (f *Forwarder) modifyResponse(resp *http.Response) error {
	x := exchangeOf(resp.Request.Context())
	x.toHeaders = time.Since(x.start)
	if resp.StatusCode < 100 || resp.StatusCode > 599 {
		// As the fast path's parser (issue 17: net/http's server panics
		// writing such a code).
		return fmt.Errorf("%w: status %d", errBadResponse, resp.StatusCode)
	}
	code := resp.StatusCode
	if code == http.StatusOK && grpcAnswer(resp.Header) {
		if v := resp.Header.Get("Grpc-Status"); v != "" { // trailers-only
			if c := grpcHTTPStatus(v); c != 0 {
				code = c
			}
		} else {
			resp.Body = &grpcTrailers{ReadCloser: resp.Body, resp: resp, x: x}
		}
	}
	if x.answered(resp.Request, code) {
		return errRetryStatus
	}
	if x.done != nil {
		x.done(resp.Header, x.backend)
	}
	x.status = resp.StatusCode
	return nil
}

// errorHandler runs when the round trip failed (or modifyResponse asked
// for a retry).
func (f *Forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	f.failed(r.Context(), w, r, exchangeOf(r.Context()), err)
}
