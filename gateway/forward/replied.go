package forward

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// Whether a byte of a backend's answer arrived, on the ReverseProxy path,
// where net/http's Transport reads the connection: the resend rules
// (outcome.go, failed) must not send a request again once the backend began
// to answer it, and the Transport's errors do not say (a reset before the
// first byte and one in the middle of the head read alike). The fast path
// knows it itself (upConn.replied).

// readCounter is a backend connection of the Transport that counts the
// bytes read from it.
type readCounter struct {
	net.Conn
	read atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// replyWatch notes the connection a request got from the Transport and how
// much had been read from it then; replied reports whether more was read
// since: the answer began.
type replyWatch struct {
	conn *readCounter
	mark int64
}

// trace returns r with a client trace that feeds w.
func (w *replyWatch) trace(r *http.Request) *http.Request {
	return r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			nc := info.Conn
			// A *tls.Conn, or a connection wrapping one (h2.go's
			// prefacedConn): the count is on the connection under it.
			if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
				nc = tc.NetConn()
			}
			w.conn, w.mark = nil, 0
			if rc, ok := nc.(*readCounter); ok {
				w.conn, w.mark = rc, rc.read.Load()
			}
		},
	}))
}

func (w *replyWatch) replied() bool { return w.conn != nil && w.conn.read.Load() > w.mark }
