package admission

import (
	"net/http"
	"strings"

	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// ScreenOptions are the screen's settings, from the config at start (a
// reload does not change them), and its hooks.
type ScreenOptions struct {
	// Lenient: the server is net/http (server.implementation), which lets
	// through what gateway/h1 refuses as it parses.
	Lenient bool
	// AllowTrace is server.allow_trace; MaxFields server.max_header_fields.
	AllowTrace bool
	MaxFields  int
	// Caps, when set, are the connection caps whose refused connections
	// the screen answers 503.
	Caps *Caps
	// Observer counts the refusals (Refused, by reason).
	Observer Observer
	// Logged is told of each refused request once answered, with its
	// status (gateway's access line).
	Logged func(r *http.Request, status int)
}

// Screen returns chi's middleware that refuses, before routing, what
// latch does not forward:
//   - every request on a connection over server.max_connections(_per_ip):
//     503 and close (Caps);
//   - CONNECT: 501 and close (latch does not tunnel);
//   - TRACE: 405 unless server.allow_trace (it would echo to the client
//     the cookies and credentials a front proxy added);
//   - an Upgrade that is not a list of protocol tokens: 400 and close;
//   - an Upgrade to h2c: dropped, the request served in HTTP/1.1
//     (gateway/h2c.go says why);
//   - on HTTP/2 and on net/http, more header fields than
//     server.max_header_fields: 431 and close (gateway/h1 refuses them as
//     it parses);
//
// and, on server.implementation net/http, what gateway/h1 refuses as it
// parses but Go's server lets through: an empty Host (HTTP/1.1) and a
// request target with bytes outside visible ASCII (400 and close). A
// chunked request there also closes its connection after the response:
// Go's server drops a Content-Length sent with Transfer-Encoding and
// reads the body as chunked; a front proxy that framed the request by its
// Content-Length would read the next request elsewhere (RFC 9112 §6.1).
func Screen(o ScreenOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return o.screen(next) }
}

func (o ScreenOptions) screen(next http.Handler) http.Handler {
	lenient, allowTrace, capped, maxFields, refuse := o.Lenient, o.AllowTrace, o.Caps != nil, o.MaxFields, o.refuse
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if capped {
			if _, refused := r.Context().Value(refusedConn{}).(string); refused {
				refuse(w, r, http.StatusServiceUnavailable, "", "latch: too many connections\n")
				return
			}
		}
		switch r.Method {
		case http.MethodConnect:
			refuse(w, r, http.StatusNotImplemented, "connect", "latch: CONNECT is not supported\n")
			return
		case "PRI": // HTTP/2's preface; net/http passes it on when h2c is off
			if r.ProtoMajor == 2 {
				refuse(w, r, http.StatusHTTPVersionNotSupported, "", h2cOff)
				return
			}
		case http.MethodTrace:
			if !allowTrace {
				w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
				refuse(w, r, http.StatusMethodNotAllowed, "trace", "latch: TRACE is not allowed\n")
				return
			}
		}
		if up := r.Header["Upgrade"]; len(up) > 0 && !upgradeList(up) {
			// ReverseProxy refuses it through its error handler, which
			// would charge the backend (FuzzRequestPath found
			// "Upgrade: \xa0websocket").
			refuse(w, r, http.StatusBadRequest, "upgrade", "latch: malformed Upgrade\n")
			return
		}
		dropH2CUpgrade(r) // served in HTTP/1.1, never forwarded
		if (lenient || r.ProtoMajor == 2) && fieldCount(r.Header) > maxFields {
			refuse(w, r, http.StatusRequestHeaderFieldsTooLarge, "fields", "latch: too many header fields\n")
			return
		}
		if lenient {
			if r.Host == "" && r.ProtoAtLeast(1, 1) {
				refuse(w, r, http.StatusBadRequest, "host", "latch: empty Host\n")
				return
			}
			if !httpgrammar.VisibleASCII(r.RequestURI) {
				refuse(w, r, http.StatusBadRequest, "target", "latch: request target not visible ASCII\n")
				return
			}
			if len(r.TransferEncoding) > 0 {
				w.Header().Set("Connection", "close")
			}
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a screened request and closes its connection (but for a
// 405: the request was well framed).
func (o ScreenOptions) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	if reason != "" {
		o.Observer.Refused(reason)
	}
	if code != http.StatusMethodNotAllowed {
		w.Header().Set("Connection", "close")
	}
	forward.PlainError(w, code, msg)
	o.Logged(r, code)
}

// upgradeList reports whether vv is an Upgrade list (RFC 9110 §7.8:
// tokens, "/" between a protocol's name and version).
func upgradeList(vv []string) bool {
	for _, v := range vv {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c != '/' && c != ',' && c != ' ' && c != '\t' && !httpgrammar.IsTokenChar(c) {
				return false
			}
		}
	}
	return true
}

// fieldCount is the number of header field lines h came from.
func fieldCount(h http.Header) int {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	return n
}

// h2cOff answers HTTP/2's preface on a plain listener without server.h2c
// (net/http; gateway/h1 answers it 505 as it parses).
const h2cOff = "latch: HTTP/2 without TLS (h2c) is off: see server.h2c\n"

// dropH2CUpgrade removes h2c from r's Upgrade, and HTTP2-Settings (the
// Upgrade's companion, RFC 7540 §3.2.1): latch serves the request in
// HTTP/1.1 and forwards no h2c upgrade (see gateway/h2c.go). An
// Upgrade left empty is removed, so the request takes the plain path.
func dropH2CUpgrade(r *http.Request) {
	up := r.Header["Upgrade"]
	if len(up) == 0 || !httpgrammar.ListHas(up, "h2c") {
		return
	}
	var keep []string
	for _, v := range up {
		for p := range strings.SplitSeq(v, ",") {
			if p = httpgrammar.TrimOWS(p); p != "" && !strings.EqualFold(p, "h2c") {
				keep = append(keep, p)
			}
		}
	}
	if len(keep) == 0 {
		r.Header.Del("Upgrade")
	} else {
		r.Header["Upgrade"] = []string{strings.Join(keep, ", ")}
	}
	r.Header.Del("Http2-Settings")
}
