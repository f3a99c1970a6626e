package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// FuzzRelayIntact sends sequences of requests (decodePlan: heads up to
// 60 KiB, bodies up to 300 KiB by length and chunked, pipelined and one by
// one, over kept-alive connections) from a client through latch (h1 and
// the fast path, on loopback) to a backend that answers each as planned
// (statuses, heads up to 30 KiB, bodies by length, chunked and ended by a
// close). Whatever the sequence, the bytes arrive intact at both ends: the
// backend receives each request once, with its method, target, fields
// (less Host, framing and hop-by-hop) and body as the client sent them;
// the client receives each answer with the backend's status, fields (less
// framing and hop-by-hop, plus latch's cookie) and body.
//
// Built with -tags sockfault (make fuzz and make test run both builds),
// latch's socket reads and writes are cut short and refused with EAGAIN at
// random, seeded by the input (gateway/internal/sockio, fault.go): the
// paths a real link takes and loopback never does, checked against the
// same invariants.
func FuzzRelayIntact(f *testing.F) {
	for _, s := range [][]byte{
		{},
		{0, 0, 0, 0, 0, 0, 1},                   // a GET, answered with a length
		{2, 1, 0, 7, 0, 7, 2, 0, 0, 0, 0, 0, 0}, // a 300 KiB POST, then a GET
		{0, 0, 3, 0, 0, 0, 3},                   // a GET with a 60 KiB head
		{1, 4, 0, 0, 3, 0x0f, 4},                // a PATCH answered 204
	} {
		f.Add(s)
	}
	be := newPlanBackend(f)
	tg := startGatewayWith(f, func(c *config.Config) {
		// A request that hangs ends in a header timeout: an answer, not a
		// hung fuzz run.
		c.Transport.ResponseHeaderTimeout = config.Set(5 * time.Second)
		c.Server.ReadHeaderTimeout = config.Set(10 * time.Second)
		// One input's failures must not refuse the next input's requests.
		c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1 << 20)
	}, nil, []discovery.Backend{{ID: "b", Service: "web", Addr: be.ln.Addr().String(), Weight: 1, Health: discovery.Passing}})
	addr := strings.TrimPrefix(tg.url, "http://")
	// On net/http latch closes a connection after a chunked request (the
	// screen: Go's server reads a Content-Length sent with chunked as
	// chunked), so the requests pipelined behind one are never read there.
	closesAfterChunked := tg.g.c.Server.Implementation == "net/http"
	var inputs atomic.Int64
	f.Cleanup(func() {
		// A small input may draw no fault (they are random); all of them
		// together must draw some, or the faulted build checked nothing.
		// (When fuzzing, the process that sets up runs no input.)
		if faulty && inputs.Load() >= 3 && faultsInjected() == 0 {
			f.Error("the sockfault build injected no fault")
		}
	})

	var ids atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256 {
			return // the plan reads at most 8 requests' choices
		}
		inputs.Add(1)
		h := fnv.New64a()
		h.Write(data)
		seedFaults(h.Sum64())

		be.stray(t)
		conns := decodePlan(data, func() int64 { return ids.Add(1) })
		if closesAfterChunked {
			for i, cp := range conns {
				for j, x := range cp.reqs {
					if x.chunked {
						x.close, conns[i].reqs = true, cp.reqs[:j+1] // its conn's last request
						break
					}
				}
			}
		}
		for _, cp := range conns {
			for _, x := range cp.reqs {
				be.plans.Store(x.id, x)
			}
		}
		for i, cp := range conns {
			relayConn(t, addr, i, cp)
		}
		for _, cp := range conns {
			for _, x := range cp.reqs {
				be.check(t, x)
			}
		}
	})
}

// relayConn runs one client connection of the plan and checks each answer.
func relayConn(t *testing.T, addr string, n int, cp connPlan) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	answered := make(chan struct{}, len(cp.reqs))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close() // unblocks the writer when a check fails
	wg.Go(func() {
		for i, x := range cp.reqs {
			if i > 0 && !cp.pipelined {
				if _, ok := <-answered; !ok {
					return
				}
			}
			if _, err := conn.Write(x.request()); err != nil {
				return // the reader reports what went wrong
			}
		}
	})
	defer close(answered)
	br := bufio.NewReader(conn)
	for i, x := range cp.reqs {
		what := fmt.Sprintf("conn %d (pipelined %v) request %d: %s %.40s (head %d B, body %d B chunked %v; answer %d, head %d B, body %d B frame %d)",
			n, cp.pipelined, i, x.method, x.uri, headBytes(x.header), len(x.body), x.chunked,
			x.status, headBytes(x.respHeader), len(x.respBody), x.respFrame)
		resp, err := http.ReadResponse(br, &http.Request{Method: x.method})
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", what, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: reading the answer's body (%d B read): %v", what, len(body), err)
		}
		if resp.StatusCode != x.status {
			t.Fatalf("%s: status %d, the backend answered %d (body %.200q)", what, resp.StatusCode, x.status, body)
		}
		got := resp.Header.Clone()
		for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "X-Request-Id"} {
			delete(got, k)
		}
		if sc := got["Set-Cookie"]; len(sc) == 1 && strings.HasPrefix(sc[0], "latch=") {
			delete(got, "Set-Cookie")
		}
		if want := x.wantResponseHeader(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the client received other fields than the backend sent:\n%s", what, headerDiff(got, want))
		}
		if !bytes.Equal(body, x.respBody) {
			t.Fatalf("%s: the client received a body of %d B, the backend sent %d B (first difference at %d)",
				what, len(body), len(x.respBody), firstDiff(body, x.respBody))
		}
		answered <- struct{}{}
	}
	if cp.reqs[len(cp.reqs)-1].close {
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("conn %d: after Connection: close, latch did not close the connection (%v)", n, err)
		}
	}
}

// planBackend answers each request as its plan (found by X-Fz-Id) says and
// records what it received.
type planBackend struct {
	ln    net.Listener
	plans sync.Map // id → *exchangePlan
	mu    sync.Mutex
	got   map[int64][]*http.Request // id → requests received and not yet checked
	done  map[int64]bool            // ids checked
	again []*http.Request           // received after their id was checked
	body  map[*http.Request][]byte
	wg    sync.WaitGroup
	conns sync.Map // net.Conn → struct{}
}

func newPlanBackend(tb testing.TB) *planBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &planBackend{ln: ln, got: map[int64][]*http.Request{}, done: map[int64]bool{}, body: map[*http.Request][]byte{}}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Store(c, struct{}{})
			b.wg.Go(func() { b.serve(c) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		b.conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		b.wg.Wait()
	})
	return b
}

func (b *planBackend) serve(c net.Conn) {
	defer b.conns.Delete(c)
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(r.Body)
		id, _ := strconv.ParseInt(r.Header.Get("X-Fz-Id"), 10, 64)
		b.mu.Lock()
		if b.done[id] {
			b.again = append(b.again, r)
		} else {
			b.got[id] = append(b.got[id], r)
			b.body[r] = body
		}
		b.mu.Unlock()
		p, ok := b.plans.Load(id)
		if err != nil || !ok {
			return // check reports it
		}
		x := p.(*exchangePlan)
		if _, err := c.Write(x.response()); err != nil || x.respFrame == respClose && x.status != http.StatusNoContent {
			return
		}
	}
}

// check fails t unless the backend received x once, as the client sent it.
func (b *planBackend) check(t *testing.T, x *exchangePlan) {
	t.Helper()
	b.mu.Lock()
	rs := b.got[x.id]
	b.mu.Unlock()
	what := fmt.Sprintf("request %d: %s %.40s (head %d B, body %d B chunked %v)", x.id, x.method, x.uri, headBytes(x.header), len(x.body), x.chunked)
	if len(rs) != 1 {
		t.Fatalf("%s: the backend received it %d times", what, len(rs))
	}
	r := rs[0]
	if r.Method != x.method || r.RequestURI != x.uri || r.Host != "fz.example" {
		t.Fatalf("%s: the backend received %s %s (Host %s)", what, r.Method, r.RequestURI, r.Host)
	}
	got := r.Header.Clone()
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id"} {
		delete(got, k)
	}
	if want := x.wantRequestHeader(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: the backend received other fields than the client sent:\n%s", what, headerDiff(got, want))
	}
	b.mu.Lock()
	body := b.body[r]
	b.mu.Unlock()
	if !bytes.Equal(body, x.body) {
		t.Fatalf("%s: the backend received a body of %d B, the client sent %d B (first difference at %d)",
			what, len(body), len(x.body), firstDiff(body, x.body))
	}
	b.mu.Lock()
	delete(b.got, x.id)
	delete(b.body, r)
	b.done[x.id] = true
	b.mu.Unlock()
	b.plans.Delete(x.id)
}

// stray fails t if a request checked earlier was received again since.
func (b *planBackend) stray(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.again {
		t.Fatalf("request %s (%s %s) received again after it was answered and checked", r.Header.Get("X-Fz-Id"), r.Method, r.RequestURI)
	}
}

func headBytes(fields [][2]string) int {
	n := 0
	for _, f := range fields {
		n += len(f[0]) + len(f[1]) + 4
	}
	return n
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// headerDiff lists the fields that differ, values shortened.
func headerDiff(got, want http.Header) string {
	var b strings.Builder
	short := func(vv []string) string {
		s := fmt.Sprintf("%q", vv)
		if len(s) > 80 {
			s = s[:80] + fmt.Sprintf("… (%d values)", len(vv))
		}
		return s
	}
	for k, vv := range got {
		if !reflect.DeepEqual(vv, want[k]) {
			fmt.Fprintf(&b, "  %s: got %s, want %s\n", k, short(vv), short(want[k]))
		}
	}
	for k, vv := range want {
		if _, ok := got[k]; !ok {
			fmt.Fprintf(&b, "  %s: missing, want %s\n", k, short(vv))
		}
	}
	return b.String()
}
