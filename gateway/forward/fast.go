package forward

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
	"github.com/latchgw/latch/policy"
)

// The fast path. For every request but an upgrade latch writes the
// request straight from the client's parsed headers to a pooled backend
// connection, streams its body (upload.go) and parses the response head
// straight into the client's response, on the handler's goroutine.
// ReverseProxy clones the request, its headers and the response's, and
// net/http's Transport runs two goroutines per connection: on a loaded
// machine that bookkeeping costs more than the proxying. And its response
// parsing is not latch's: issue 17 found it relaying 10 MB response heads,
// folded headers and thousands of 100 Continue, and panicking on a status
// of 099. Upgrades (WebSocket) still go through ReverseProxy, over a
// Transport held to the same response head limit.
//
// Both paths behave the same to clients and backends: hop-by-hop headers
// and the headers named in Connection are dropped both ways, X-Forwarded-*
// are set by the same trust rules, failures set the same outcome, retries
// and status codes. Interim (1xx) responses are not relayed on the fast
// path (ReverseProxy relays 103 Early Hints).

// fastPath reports whether r can take the fast path: anything but a
// request to upgrade the connection.
func fastPath(r *http.Request) bool {
	return r.Header["Upgrade"] == nil || !httpgrammar.ListHas(r.Header["Connection"], "upgrade")
}

// cleanQuery reports whether a query has nothing ReverseProxy would drop:
// a ';' or a malformed %-escape (the parameter smuggling of CVE-2022-2880).
// Such a query is sent as ReverseProxy sends it (cleanedQuery), so both
// paths forward the same.
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

// cleanedQuery is q without the parameters that do not parse, re-encoded
// (sorted by key), as ReverseProxy forwards it.
func cleanedQuery(q string) string {
	v, _ := url.ParseQuery(q)
	return v.Encode()
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// errClientGone is a failed write to the client.
var errClientGone = errors.New("client gone")

// errBadResponse is a backend answer latch will not relay.
var errBadResponse = errors.New("malformed response from backend")

// forwardFast sends one attempt of a fast-path request to x.backend and
// relays the answer.
func (f *Forwarder) forwardFast(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange) {
	fresh := false
	for {
		c, err := f.poolFor(x.spec).conn(ctx, x.backend.Addr, fresh)
		if err != nil {
			f.failed(ctx, w, r, x, err)
			return
		}
		err = f.roundTrip(ctx, w, r, x, c)
		if err == nil {
			return
		}
		c.close()
		if errors.Is(err, errIdleDirty) {
			continue // nothing was sent: the next idle connection, or a new one
		}
		x.replied = c.replied
		var se staleError
		if errors.As(err, &se) && c.reused && !fresh && ctx.Err() == nil &&
			(c.wrote == 0 || resendable(r, x.spec)) && x.body.detach(x.gen) {
			// The backend closed the idle connection without answering (as
			// it may when its keep-alive timeout meets our request): send it
			// again on a new connection, when nothing of it was written, or
			// when RFC 9110 §9.2.2 allows a request that may have reached
			// the backend to go again. (Issue 22: a POST the backend read
			// before closing was sent twice.) Otherwise failed answers 502.
			fresh = true
			if c.wrote > 0 {
				x.resent = true // it may have reached the backend: the one resend is spent
			}
			if x.body != nil {
				x.gen = x.body.state.Load() >> 1
			}
			continue
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		f.failed(ctx, w, r, x, err)
		return
	}
}

// roundTrip runs the request over c. An error means nothing was written to
// the client (and c must be closed); after that, it handles every failure
// itself.
func (f *Forwarder) roundTrip(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange, c *upConn) error {
	u := c.pool.u
	c.wrote, c.replied = 0, false
	if u.headerTimeout > 0 {
		_ = c.SetDeadline(u.now().Add(u.headerTimeout))
	}
	if c.reused && !c.sends(x) && !c.idleClean() {
		return errIdleDirty
	}
	stop := c.watch(ctx)
	if err := f.writeRequest(c, r, x); err != nil {
		stop()
		return err
	}
	var sendErr error // the backend stopped taking the body
	if x.body != nil {
		// An upload takes as long as the client takes: the route's timeout
		// bounds it, not the header timeout (as net/http's Transport).
		c.setDeadline(ctx, time.Time{})
		var err error
		if sendErr, err = f.sendBody(ctx, w, r, x, c); err != nil {
			stop()
			return err
		}
		if u.headerTimeout > 0 {
			// The header timeout runs from the end of the upload, as
			// net/http's ResponseHeaderTimeout does.
			c.setDeadline(ctx, u.now().Add(u.headerTimeout))
		}
	}
	code, err := c.readHead(r.Method)
	if err != nil {
		stop()
		if sendErr != nil {
			err = sendErr // no answer to show for it: the failed upload is the story
		}
		return c.headError(ctx, err)
	}
	if sendErr != nil {
		c.keep = false // it answered before taking the whole body
	}
	c.setDeadline(ctx, time.Time{})
	x.toHeaders = time.Since(x.start)
	if x.answered(r, code) {
		stop()
		c.close() // its body is not wanted
		return nil
	}

	h := w.Header()
	c.copyHeader(h)
	if x.done != nil {
		x.done(h, x.backend)
	}
	x.status = code
	w.WriteHeader(code)

	keep, err := c.copyBody(ctx, w)
	if !stop() {
		keep = false // the cancellation poisoned the connection's deadline
	}
	if err != nil {
		if x.cut(ctx, err); x.outcome == policy.Failure {
			f.warn(&f.relayFailed, "relaying backend response failed", x, code, err)
		}
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

// writeRequest writes r's head to the backend: the request line, Host, the
// fields of writeHead and the body's framing. A request without a body is
// sent at once; one with a body follows with sendBody.
func (f *Forwarder) writeRequest(c *upConn, r *http.Request, x *exchange) error {
	bw := c.bw
	if c.sends(x) {
		// Gathered in c.out, then written by send.
		c.capture, c.out = true, c.out[:0]
		defer func() { c.capture = false }()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if x.spec.Strips() || len(r.RequestURI) == 0 || r.RequestURI[0] != '/' || !cleanQuery(r.URL.RawQuery) {
		// As ReverseProxy sends it: the path (prefix stripped), never the
		// absolute form's scheme and host, the query cleaned.
		u := outboundURL(x.spec, r.URL)
		if !cleanQuery(u.RawQuery) {
			v := *u
			v.RawQuery = cleanedQuery(u.RawQuery)
			u = &v
		}
		bw.WriteString(u.RequestURI())
	} else {
		bw.WriteString(r.RequestURI)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if r.Host != "" {
		bw.WriteString(r.Host)
	} else {
		bw.WriteString(x.backend.Addr) // an HTTP/1.0 client may send none; as ReverseProxy does
	}
	bw.WriteString("\r\n")
	h := head{bw: bw}
	if err := f.writeHead(&h, r, x); err != nil {
		return err // not sent: c is closed
	}
	switch {
	case x.body == nil:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n") // as net/http's Transport sends them
		}
	case x.body.length >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(c.scratch[:0], x.body.length, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if x.body != nil && !expectsContinue(r) {
		return nil // the body follows in the same writes
	}
	if c.capture {
		_ = bw.Flush() // into c.out: cannot fail
		return c.send()
	}
	if err := bw.Flush(); err != nil {
		return unsent(err)
	}
	return nil
}
