package gateway

// FuzzRelayIntact's inputs: a few bytes decode into client connections,
// each a sequence of requests (method, head size, body size and framing)
// and the answer the backend gives each (status, head size, body size and
// framing). The bytes carry choices, not content: content comes from a
// generator seeded by the input, so a short input still makes heads of
// 60 KiB and bodies of 300 KiB.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
)

// exchangePlan is one request and the backend's answer to it.
type exchangePlan struct {
	id      int64 // unique in the process: X-Fz-Id, and the path
	method  string
	uri     string
	header  [][2]string // the client's fields, in order, framing excluded
	hop     bool        // a field named in Connection: latch must drop it
	close   bool        // the client sends Connection: close (its conn's last request)
	body    []byte
	chunked bool

	status     int
	respHeader [][2]string
	respBody   []byte
	respFrame  int // respLength, respChunked or respClose
}

const (
	respLength = iota
	respChunked
	respClose // no length: the backend closes the connection to end the body
)

// connPlan is one client connection: its requests, written one after the
// answer to the last, or all at once (pipelined).
type connPlan struct {
	pipelined bool
	reqs      []*exchangePlan
}

var (
	planMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions}
	// Around the buffers' sizes (h1's 4 KiB, the 32 KiB copy buffers), and
	// a few hundred KiB: many socket buffers' worth under faults.
	planBodySizes = []int{0, 1, 100, 4095, 4097, 32<<10 + 1, 64<<10 + 7, 300 << 10}
	// Request heads up to near server.max_header_bytes (64 KiB).
	planHeadSizes = []int{0, 4 << 10, 32 << 10, 60 << 10}
	// Response heads up to half of transport.max_response_header_bytes.
	planRespHeadSizes = []int{0, 8 << 10, 30 << 10}
	planStatuses      = []int{200, 201, 404, 204}
)

const (
	planMaxConns = 3
	planMaxReqs  = 8
	planMaxBytes = 1200 << 10 // bodies per input, both ways
)

// planDecoder reads choices from the input; past its end every choice is 0.
type planDecoder struct{ b []byte }

func (d *planDecoder) next() int {
	if len(d.b) == 0 {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return int(v)
}

// decodePlan turns data into connections; nextID numbers the requests.
//
//	input   = conn...                      (up to 3 conns, 8 requests)
//	conn    = flags request...             flags: bit 0 pipelined, >>1 % 4 + 1 requests
//	request = method head body status resp seed
//	  method: % 6 of planMethods
//	  head:   % 4 of planHeadSizes; bit 4: a Connection-named field; bit 5: Connection: close (last request only)
//	  body:   % 8 of planBodySizes (POST, PUT, PATCH only); bit 3: chunked
//	  status: % 4 of planStatuses; >>2 % 3 of planRespHeadSizes
//	  resp:   % 8 of planBodySizes; >>3 % 3: length, chunked, close
//	  seed:   the content's generator
func decodePlan(data []byte, nextID func() int64) []connPlan {
	d := &planDecoder{b: data}
	budget := planMaxBytes
	size := func(i int) int {
		n := planBodySizes[i%len(planBodySizes)]
		if n > budget {
			n = budget
		}
		budget -= n
		return n
	}
	var conns []connPlan
	total := 0
	for len(conns) < planMaxConns && total < planMaxReqs && (len(conns) == 0 || len(d.b) > 0) {
		flags := d.next()
		cp := connPlan{pipelined: flags&1 != 0}
		n := 1 + (flags>>1)%4
		for i := 0; i < n && total < planMaxReqs; i++ {
			total++
			x := &exchangePlan{id: nextID()}
			x.method = planMethods[d.next()%len(planMethods)]
			head := d.next()
			body := d.next()
			status := d.next()
			resp := d.next()
			rnd := rand.New(rand.NewPCG(uint64(d.next()), uint64(total)))
			x.hop = head&16 != 0
			x.close = head&32 != 0 && i == n-1
			x.uri = fmt.Sprintf("/fz/%d?q=%s&r=%%2F%d", x.id, token(rnd, 1+rnd.IntN(20)), rnd.IntN(1000))
			x.header = fields(rnd, "X-Fz-Q", planHeadSizes[head%len(planHeadSizes)])
			if x.method == http.MethodPost || x.method == http.MethodPut || x.method == http.MethodPatch {
				x.body = content(rnd, size(body))
				x.chunked = body&8 != 0
			}
			x.status = planStatuses[status%len(planStatuses)]
			x.respHeader = fields(rnd, "X-Fz-R", planRespHeadSizes[(status>>2)%len(planRespHeadSizes)])
			x.respFrame = (resp >> 3) % 3
			if x.status != http.StatusNoContent {
				x.respBody = content(rnd, size(resp))
			}
			cp.reqs = append(cp.reqs, x)
		}
		conns = append(conns, cp)
	}
	return conns
}

// fields makes header fields of about size bytes in all, named prefix-N,
// in lines of up to 16 KiB; some names repeat (their values stay in order).
func fields(rnd *rand.Rand, prefix string, size int) [][2]string {
	out := [][2]string{{prefix + "-0", token(rnd, 1+rnd.IntN(40))}}
	for n := 0; n < size; {
		k := prefix + "-" + strconv.Itoa(1+rnd.IntN(len(out)+1))
		v := token(rnd, 1+rnd.IntN(min(16<<10, size-n+1)))
		out = append(out, [2]string{k, v})
		n += len(k) + len(v) + 4
	}
	return out
}

// token is n bytes a field value or query may hold as they are.
func token(rnd *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$'()*+"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rnd.IntN(len(chars))]
	}
	return string(b)
}

// content is n bytes of any value.
func content(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// request is x as the client writes it.
func (x *exchangePlan) request() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: fz.example\r\nX-Fz-Id: %d\r\n", x.method, x.uri, x.id)
	for _, f := range x.header {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	switch {
	case x.hop && x.close:
		b.WriteString("Connection: X-Fz-Hop, close\r\nX-Fz-Hop: dropped\r\n")
	case x.hop:
		b.WriteString("Connection: X-Fz-Hop\r\nX-Fz-Hop: dropped\r\n")
	case x.close:
		b.WriteString("Connection: close\r\n")
	}
	switch {
	case x.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		writeChunked(&b, x.body, x.id)
	case x.body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(x.body))
		b.Write(x.body)
	default:
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// response is the backend's answer to x.
func (x *exchangePlan) response() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d Fz\r\nContent-Type: application/octet-stream\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nX-Fz-Id: %d\r\n", x.status, x.id)
	for _, f := range x.respHeader {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	switch {
	case x.status == http.StatusNoContent:
		b.WriteString("\r\n")
	case x.respFrame == respChunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		writeChunked(&b, x.respBody, x.id+1)
	case x.respFrame == respClose:
		b.WriteString("Connection: close\r\n\r\n")
		b.Write(x.respBody)
	default:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(x.respBody))
		b.Write(x.respBody)
	}
	return b.Bytes()
}

// writeChunked writes body in chunks of random sizes, then the last chunk.
func writeChunked(b *bytes.Buffer, body []byte, seed int64) {
	rnd := rand.New(rand.NewPCG(uint64(seed), 7))
	for len(body) > 0 {
		n := min(len(body), 1+rnd.IntN(20<<10))
		fmt.Fprintf(b, "%x\r\n", n)
		b.Write(body[:n])
		b.WriteString("\r\n")
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
}

// wantRequestHeader is the header the backend must receive for x: the
// client's fields but Host, framing and those Connection names, as
// net/http parses them.
func (x *exchangePlan) wantRequestHeader() http.Header {
	h := http.Header{"X-Fz-Id": {strconv.FormatInt(x.id, 10)}}
	for _, f := range x.header {
		h[f[0]] = append(h[f[0]], f[1])
	}
	return h
}

// wantResponseHeader is the header the client must receive for x: the
// backend's fields but framing and hop-by-hop ones.
func (x *exchangePlan) wantResponseHeader() http.Header {
	h := http.Header{
		"Content-Type": {"application/octet-stream"},
		"Date":         {"Mon, 02 Jan 2006 15:04:05 GMT"},
		"X-Fz-Id":      {strconv.FormatInt(x.id, 10)},
	}
	for _, f := range x.respHeader {
		h[f[0]] = append(h[f[0]], f[1])
	}
	return h
}
