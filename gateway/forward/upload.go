package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// The fast path's request body: streamed from the client to the backend
// as it arrives, framed as the client framed it (Content-Length, else
// chunked), after the backend's 100 Continue when the client asked for
// one. Every read goes through the exchange's replayBody, so a failed read
// is recorded as the client's fault (clientfault.go) and a body nobody
// read can still go to another backend.

// expectTimeout is how long a backend has to answer Expect: 100-continue
// before the body is sent anyway (net/http's ExpectContinueTimeout, as
// latch's Transport sets it).
const expectTimeout = time.Second

// errBodyUnsent marks a backend that gave its final answer to Expect:
// 100-continue: the body was not sent, so the connection cannot carry
// another request.
var errBodyUnsent = errors.New("backend answered before the request body was sent")

// expectsContinue reports whether r's client asked for 100 Continue
// (httpgrammar.Expect: the reading gateway/h1 answers it by). The backend
// is asked the same: the field goes on as the client sent it.
func expectsContinue(r *http.Request) bool {
	continues, _ := httpgrammar.Expect(r.Header["Expect"])
	return continues
}

// sendBody sends r's body after its head (writeRequest). sent is a failure
// to write to the backend, which may still have answered (a 413 before
// reading the body, say): the caller reads the response head before
// blaming the backend. err ends the attempt: the client broke its body
// (*clientFault), or the backend failed before taking any of it.
func (f *Forwarder) sendBody(ctx context.Context, w http.ResponseWriter, r *http.Request, x *exchange, c *upConn) (sent, err error) {
	if expectsContinue(r) {
		final, err := c.awaitContinue(ctx, expectTimeout)
		if err != nil {
			return nil, err
		}
		if final {
			return errBodyUnsent, nil
		}
	}
	// A read blocked on a slow client ends with the route's timeout: the
	// body's reads are cut (replayBody.cut, armed by Serve).

	body := attemptBody{b: x.body, gen: x.gen}
	chunked := x.body.length < 0
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	bw := c.bw
	var n int64
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			n += int64(nr)
			if chunked {
				bw.Write(strconv.AppendUint(c.scratch[:0], uint64(nr), 16))
				bw.WriteString("\r\n")
			}
			if _, werr := bw.Write(buf[:nr]); werr != nil {
				return werr, nil
			}
			if chunked {
				bw.WriteString("\r\n")
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			var cf *clientFault
			if errors.As(rerr, &cf) {
				return nil, cf
			}
			return nil, rerr
		}
	}
	if !chunked && n != x.body.length {
		// The server's body reader ends at the declared length or fails;
		// a reader that ended early is the client's short body.
		cf := &clientFault{fmt.Errorf("%d of %d body bytes: %w", n, x.body.length, io.ErrUnexpectedEOF)}
		x.body.failure.CompareAndSwap(nil, cf)
		return nil, x.body.failure.Load()
	}
	if chunked {
		bw.WriteString("0\r\n\r\n") // the client's trailers, if any, are not forwarded
	}
	return bw.Flush(), nil
}

// awaitContinue waits up to d for the backend's answer to a head sent with
// Expect: 100-continue. final reports a final response instead of 100
// Continue: it is read next by readHead, and the body is not sent. No
// answer within d: the body is sent anyway.
func (c *upConn) awaitContinue(ctx context.Context, d time.Duration) (final bool, err error) {
	c.setDeadline(ctx, c.pool.u.now().Add(d))
	_, err = c.br.Peek(1)
	c.setDeadline(ctx, time.Time{})
	c.replied = err == nil
	switch {
	case err == nil:
	case timeout(err) && ctx.Err() == nil:
		return false, nil
	case timeout(err):
		return false, err
	default:
		return false, staleError{err} // closed before answering: nothing of the body was read
	}
	for interim := 0; ; interim++ {
		head, err := c.readHeadBytes()
		if err != nil {
			return false, err
		}
		code, err := c.parseHead(head)
		if err != nil {
			return false, err
		}
		switch {
		case code == http.StatusContinue:
			return false, nil
		case code == http.StatusSwitchingProtocols:
			return false, fmt.Errorf("%w: 101 to a request that asked for no upgrade", errBadResponse)
		case code < 200 && interim == maxInterim:
			return false, fmt.Errorf("%w: more than %d interim responses", errBadResponse, maxInterim)
		case code < 200:
			continue
		}
		c.pending = code
		return true, nil
	}
}
