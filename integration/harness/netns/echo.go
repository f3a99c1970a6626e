package netns

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Echo is an HTTP/1.1 backend for push-back tests, serving on a host. It
// answers each request with what it received, as digests the client can
// check byte for byte, and with the response the request asks for:
//
//	?size=N      a body of N bytes of Pattern(seed, N)
//	&seed=S      (default 0)
//	&chunked=1   sent chunked (else with Content-Length)
//	&hpad=N      an X-Resp-Pad header of N bytes of PadText(N)
//
// Response headers: X-Backend-Id; X-Req-Digest (RequestDigest of what
// arrived: request line, end-to-end test headers, body); X-Req-Body (body
// bytes) and X-Req-Body-Digest (its SHA-256); X-Resp-Digest (SHA-256 of the body sent). A request with an
// Upgrade header is answered 101, and every byte after it is echoed back.
// Requests are counted by their X-Test-Id, so a test can see one that
// arrived twice.
type Echo struct {
	ID, Addr string

	stallBody time.Duration
	mu        sync.Mutex
	ids       map[string]int
}

// EchoOptions shape an Echo's connections.
type EchoOptions struct {
	Sock        SockOpts
	Read, Write Pace // each request's reading (head and body) and response
	// StallBody stops mid-body of each response (after the first half,
	// flushed) for so long.
	StallBody time.Duration
	// TLS, when set, serves HTTPS (HTTP/1.1) over the paced connections:
	// the paces apply to the encrypted bytes.
	TLS *tls.Config
}

// StartEcho serves an Echo named id on the host until the test ends.
func StartEcho(t testing.TB, host *Host, id string, o EchoOptions) *Echo {
	t.Helper()
	return StartEchoAt(t, host, host.IP, id, o)
}

// StartEchoAt is StartEcho on ip in host's namespace (nil: the test's own,
// on an address of Hosts.AddAddr).
func StartEchoAt(t testing.TB, host *Host, ip, id string, o EchoOptions) *Echo {
	t.Helper()
	l := Listen(t, host, net.JoinHostPort(ip, "0"), o.Sock)
	e := &Echo{ID: id, Addr: l.Addr().String(), stallBody: o.StallBody, ids: map[string]int{}}
	srv := &http.Server{
		Handler: e,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			return context.WithValue(ctx, pacedKey{}, c)
		},
	}
	var pl net.Listener = &PacedListener{Listener: l, Read: o.Read, Write: o.Write}
	if o.TLS != nil {
		tc := o.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		pl = tls.NewListener(pl, tc)
	}
	go func() { _ = srv.Serve(pl) }()
	t.Cleanup(func() { srv.Close() })
	return e
}

type pacedKey struct{}

// Seen is how many times a request with X-Test-Id id arrived.
func (e *Echo) Seen(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ids[id]
}

// Twice lists the X-Test-Ids that arrived more than once.
func (e *Echo) Twice() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var twice []string
	for id, n := range e.ids {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	return twice
}

// ServeHTTP answers one request of the echo backend.
func (e *Echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pc, _ := r.Context().Value(pacedKey{}).(*PacedConn)
	if pc != nil {
		pc.ResetWrite()
		defer pc.ResetRead() // the next request's head is paced as this one's was
	}
	if id := r.Header.Get("X-Test-Id"); id != "" {
		e.mu.Lock()
		e.ids[id]++
		e.mu.Unlock()
	}
	if r.Header.Get("Upgrade") != "" {
		e.upgrade(w, r)
		return
	}
	h, hb := sha256.New(), sha256.New()
	digestHead(h, r.Method, r.RequestURI, r.Header)
	n, err := io.Copy(io.MultiWriter(h, hb), r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	size, _ := strconv.Atoi(q.Get("size"))
	seed, _ := strconv.ParseUint(q.Get("seed"), 10, 64)
	hpad, _ := strconv.Atoi(q.Get("hpad"))
	body := Pattern(seed, size)
	sum := sha256.Sum256(body)
	w.Header().Set("X-Backend-Id", e.ID)
	w.Header().Set("X-Req-Digest", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set("X-Req-Body", strconv.FormatInt(n, 10))
	w.Header().Set("X-Req-Body-Digest", hex.EncodeToString(hb.Sum(nil)))
	w.Header().Set("X-Resp-Digest", hex.EncodeToString(sum[:]))
	if hpad > 0 {
		w.Header().Set("X-Resp-Pad", PadText(hpad))
	}
	if q.Get("chunked") != "1" {
		w.Header().Set("Content-Length", strconv.Itoa(size))
	}
	w.WriteHeader(http.StatusOK)
	half := len(body) / 2
	if e.stallBody > 0 && half > 0 {
		_, _ = w.Write(body[:half])
		w.(http.Flusher).Flush()
		time.Sleep(e.stallBody)
		body = body[half:]
	}
	_, _ = w.Write(body)
}

// upgrade answers 101 and echoes the connection's bytes until the peer
// closes its side.
func (e *Echo) upgrade(w http.ResponseWriter, r *http.Request) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Backend-Id: %s\r\n\r\n", r.Header.Get("Upgrade"), e.ID)
	if brw.Flush() != nil {
		return
	}
	_, _ = io.Copy(c, brw.Reader)
}

// RequestDigest is the SHA-256 an Echo reports in X-Req-Digest: the
// method, the request target, the end-to-end headers a test sends
// (X-Pad-*, X-Test-*, Cookie: the ones no proxy may change) in name
// order, and the body.
func RequestDigest(method, target string, header http.Header, body []byte) string {
	h := sha256.New()
	digestHead(h, method, target, header)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func digestHead(h hash.Hash, method, target string, header http.Header) {
	fmt.Fprintf(h, "%s %s\n", method, target)
	var names []string
	for name := range header {
		if strings.HasPrefix(name, "X-Pad") || strings.HasPrefix(name, "X-Test-") || name == "Cookie" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range header[name] {
			fmt.Fprintf(h, "%s: %s\n", name, v)
		}
	}
	h.Write([]byte{0})
}

// Pattern is n bytes that depend on seed and on their offset, so a byte
// lost, doubled or moved shows in a digest.
func Pattern(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// PadText is n bytes of header-value text (visible ASCII) that change
// along the value.
func PadText(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[(i*7+i/len(alphabet))%len(alphabet)]
	}
	return string(b)
}

// bufioSize is big enough that a bufio.Reader over a conn never splits a
// test's 60 KiB head for its own reasons.
const bufioSize = 128 << 10

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, bufioSize) }
