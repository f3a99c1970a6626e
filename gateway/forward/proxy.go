package forward

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"time"
)

// The ReverseProxy path: upgrades (WebSocket), which need the connection
// handed over after a 101.
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

// rewrite points the outbound request at the attempt's backend, with the
// head writeHead builds from the client's request.
func (f *Forwarder) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	out := pr.Out
	u := outboundURL(x.spec, pr.In.URL)
	out.URL.Path, out.URL.RawPath = u.Path, u.RawPath
	out.URL.Scheme = "http"
	if x.spec.BackendTLS() != nil {
		out.URL.Scheme = "https"
	}
	out.URL.Host = x.backend.Addr
	out.Host = pr.In.Host // backends see the host the client asked for
	out.Header = make(http.Header, len(pr.In.Header)+3)
	h := head{out: out.Header}
	if err := f.writeHead(&h, pr.In); err != nil {
		// Not sent: the transport refuses the request, and ErrorHandler
		// answers 502.
		out.Header = http.Header{"X-Invalid": {"\n"}}
	}
}

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
	if x.answered(resp.Request, resp.StatusCode) {
		return errRetryStatus
	}
	x.session.Commit(resp.Header, resp.Request, x.backend)
	x.status = resp.StatusCode
	return nil
}

// errorHandler runs when the round trip failed (or modifyResponse asked
// for a retry).
func (f *Forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	f.failed(r.Context(), w, r, exchangeOf(r.Context()), err)
}
