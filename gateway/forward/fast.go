package forward

import (
	"context"
	"errors"
	"net/http"
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

// errClientGone is a failed write to the client.
var errClientGone = errors.New("client gone")

// errBadResponse is a backend answer latch will not relay.
var errBadResponse = errors.New("malformed response from backend")

// maxHeadBytes bounds a backend's response head (status line, headers).
const maxHeadBytes = 64 << 10

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
		f.failed(ctx, w, r, x, err)
		return
	}
}

// roundTrip runs the request over c. An error means nothing was written to
// the client (and c must be closed); after that, it handles every failure
// itself.
func (f *Forwarder) roundTrip(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange, c *upConn) error {
	u := c.pool.u
	if u.headerTimeout > 0 {
		_ = c.SetDeadline(u.now().Add(u.headerTimeout))
	}
	stop := c.watch(ctx)
	if err := f.writeRequest(c, r, x); err != nil {
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
	x.toHeaders = time.Since(x.start)
	if x.answered(r, code) {
		stop()
		c.close() // its body is not wanted
		return nil
	}

	h := w.Header()
	c.copyHeader(h)
	x.session.Commit(h, r, x.backend)
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

// writeRequest writes r's head to the backend: the request line, Host and
// the fields of writeHead.
func (f *Forwarder) writeRequest(c *upConn, r *http.Request, x *exchange) error {
	bw := c.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if x.spec.Strips() {
		bw.WriteString(outboundURL(x.spec, r.URL).RequestURI())
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
	if err := f.writeHead(&h, r); err != nil {
		return err // not sent: c is closed
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		if isTimeout(err) {
			return err
		}
		return staleError{err} // nothing was answered: see forwardFast
	}
	return nil
}
