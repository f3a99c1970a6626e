package gateway

import (
	"net/http"
	"strconv"
	"unsafe"
)

// requestID keeps the client's X-Request-Id when it is sane and otherwise
// gives the request one; the backend and the response see it.
func (g *Gateway) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids := r.Header["X-Request-Id"]
		if len(ids) == 0 || ids[0] == "" || len(ids[0]) > 128 {
			ids = g.newRequestID()
			r.Header["X-Request-Id"] = ids
		}
		// Request and response share the one-element slice: neither side
		// writes into it (an append reallocates: its capacity is 1).
		w.Header()["X-Request-Id"] = ids[:1:1]
		next.ServeHTTP(w, r)
	})
}

// requestIDBox holds a generated request id and the one-element slice
// naming it, so that a new id costs one allocation, not two.
type requestIDBox struct {
	ids [1]string
	buf [40]byte // the prefix (17 bytes) and a uint64 (at most 20 digits)
}

// newRequestID returns a one-element header value with the next request id.
func (g *Gateway) newRequestID() []string {
	box := new(requestIDBox)
	b := append(box.buf[:0], g.reqPrefix...)
	b = strconv.AppendUint(b, g.reqSeq.Add(1), 10)
	if &b[0] != &box.buf[0] { // cannot happen (the prefix is 17 bytes); stay safe if it grows
		box.ids[0] = string(b)
	} else {
		// The bytes are never written again once the id is made: the
		// string may share them (the box lives as long as either does).
		box.ids[0] = unsafe.String(&box.buf[0], len(b))
	}
	return box.ids[:]
}
