package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/latchgw/latch/gateway/config"
)

// HTTP/2's abuse cases over h2c (issue 27), each written frame by frame
// with x/net/http2's Framer on one connection while the gateway serves
// others: the server refuses it (a GOAWAY, a closed connection, a stream
// reset or a 431), the gateway's goroutines and the backend's connections
// stay bounded and come back, and a legitimate request on another
// connection succeeds meanwhile. Each prints its figures (go test -v).
func TestH2CAbuse(t *testing.T) {
	const maxStreams = 100 // server.max_concurrent_streams's default
	for _, impl := range implementations {
		t.Run(impl, func(t *testing.T) {
			be := newAbuseBackend(t)
			tg := startGateway(t, func(c *config.Config) {
				c.Server.Implementation = impl
				c.Server.H2C = true
			}, be.tb)
			addr := strings.TrimPrefix(tg.url, "http://")
			legit := h2cHTTPClient()
			defer legit.CloseIdleConnections()
			for _, ac := range abuseCases {
				t.Run(ac.name, func(t *testing.T) {
					be.settle(t)
					base := settledGoroutines(t, 0)
					s := startSampler()
					a := dialAttacker(t, addr, !ac.flood)
					start, cpu0 := time.Now(), cpuTime()
					what := ac.attack(t, a)
					took, cpu := time.Since(start), cpuTime()-cpu0
					// Meanwhile, on another connection.
					if err := h2cGet(legit, tg.url+"/"); err != nil {
						t.Fatalf("a legitimate request during %s: %v", ac.name, err)
					}
					a.c.Close()
					peakG, peakHeap := s.stop()
					after := settledGoroutines(t, base)
					t.Logf("%s: %s in %v (CPU, attacker's included: %v); wrote %d bytes; gateway goroutines %d → peak %d → %d; heap in use +%.1f MiB at peak; backend: %d requests (%d at once at most), %d connections (%d open at once at most)",
						ac.name, what, took.Round(time.Millisecond), cpu.Round(time.Millisecond), a.written.Load(), base, peakG, after,
						float64(peakHeap)/(1<<20), be.hits.Load(), be.peakInflight.Load(), be.conns.Load(), be.peakOpen.Load())
					if peakHeap > 32<<20 {
						t.Fatalf("heap in use grew by %d MiB; want at most 32", peakHeap>>20)
					}
					if peakG-base > 8*maxStreams {
						t.Fatalf("%d goroutines over the %d before; want at most %d (8 per stream allowed)", peakG-base, base, 8*maxStreams)
					}
					// One more: the legitimate request's.
					if n := be.peakInflight.Load(); n > maxStreams+1 {
						t.Fatalf("%d backend requests at once; want at most %d (max_concurrent_streams, and one)", n, maxStreams+1)
					}
				})
			}
		})
	}
}

// abuseCases are the attacks: each writes on a (whose reader runs) and
// says what the server did, failing t if it did not refuse.
var abuseCases = []struct {
	name   string
	flood  bool // the attacker reads nothing after SETTINGS
	attack func(t *testing.T, a *attacker) string
}{
	{"rapid reset", false, func(t *testing.T, a *attacker) string {
		// CVE-2023-44487: a stream opened and cancelled at once, again and
		// again; each would start a request.
		const n = 20000
		sent := 0
		for i := range n {
			id := uint32(2*i + 1)
			if a.headers(id, "/slow", true) != nil || a.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				break
			}
			sent++
		}
		a.waitEnd(2 * time.Second)
		return fmt.Sprintf("%d of %d streams opened and reset; server: %s", sent, n, a.outcome())
	}},
	{"more streams than max_concurrent_streams", false, func(t *testing.T, a *attacker) string {
		const n = 150
		for i := range n {
			if err := a.headers(uint32(2*i+1), "/slow", true); err != nil {
				t.Fatal(err)
			}
		}
		// Streams past the limit are reset at once; the first 100 wait on
		// the backend.
		deadline := time.Now().Add(5 * time.Second)
		for a.rsts() < n-100 && time.Now().Before(deadline) && !a.ended() {
			time.Sleep(time.Millisecond)
		}
		if r := a.rsts(); r < n-100 {
			t.Fatalf("%d of %d streams reset; want the %d over the limit", r, n, n-100)
		}
		return fmt.Sprintf("%d streams opened at once; server: %s", n, a.outcome())
	}},
	{"CONTINUATION flood", false, func(t *testing.T, a *attacker) string {
		// CVE-2023-45288: a header block that never ends, in CONTINUATION
		// frames of 16 KiB of fields each.
		block := a.block("/")
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true}); err != nil {
			t.Fatal(err)
		}
		frag := literalFields(16 << 10)
		const limit = 64 << 20
		frames := 0
		for a.written.Load() < limit && !a.ended() {
			if a.fr.WriteContinuation(1, false, frag) != nil {
				break
			}
			frames++
		}
		a.waitEnd(5 * time.Second)
		if !a.ended() {
			t.Fatalf("the connection still open after %d CONTINUATION frames (%d bytes)", frames, a.written.Load())
		}
		return fmt.Sprintf("%d CONTINUATION frames of 16 KiB written before the server closed; server: %s", frames, a.outcome())
	}},
	{"SETTINGS flood", true, func(t *testing.T, a *attacker) string {
		// net/http's server ACKs SETTINGS coalesced (one pending ACK
		// at most): the flood queues nothing, so it need not end it.
		return controlFlood(t, a, "SETTINGS", false, func() error { return a.fr.WriteSettings() })
	}},
	{"PING flood", true, func(t *testing.T, a *attacker) string {
		var p [8]byte
		return controlFlood(t, a, "PING", true, func() error { return a.fr.WritePing(false, p) })
	}},
	{"HPACK bomb", false, func(t *testing.T, a *attacker) string {
		// One field of 4,000 bytes into the dynamic table, then 12,000
		// one-byte references to it: a 16 KiB block that decodes to 48 MB.
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for _, f := range requestFields("/") {
			_ = enc.WriteField(f)
		}
		_ = enc.WriteField(hpack.HeaderField{Name: "x-b", Value: strings.Repeat("a", 4000)})
		buf.Write(bytes.Repeat([]byte{0x80 | 62}, 12000)) // indexed: the newest dynamic entry
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for a.status(1) == "" && a.rsts() == 0 && !a.ended() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if st := a.status(1); st != "431" && a.rsts() == 0 && !a.ended() {
			t.Fatalf("a 48 MB header list answered %q; want 431, a reset or the connection closed", st)
		}
		return fmt.Sprintf("a %d-byte header block decoding to 48 MB; server: %s", buf.Len(), a.outcome())
	}},
}

// controlFlood writes control frames (write) until the server closes the
// connection or stops reading it (no byte taken for 2s: its answers fill
// the socket the attacker does not read), 2 million at most. With
// mustEnd it fails t if the server took them all.
func controlFlood(t *testing.T, a *attacker, kind string, mustEnd bool, write func() error) string {
	const n = 2000000
	sent := 0
	var err error
	for ; sent < n; sent++ {
		if sent%1000 == 0 {
			_ = a.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		}
		if err = write(); err != nil {
			break
		}
	}
	if sent == n {
		if mustEnd {
			t.Fatalf("%d %s frames taken, the answers never read, and the connection still open", n, kind)
		}
		return fmt.Sprintf("all %d %s frames taken (answers unread), the connection open", n, kind)
	}
	how := "closed the connection"
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		how = "stopped reading (no byte taken for 2s)"
	}
	return fmt.Sprintf("%d %s frames written (answers unread) before the server %s", sent, kind, how)
}

// abuseBackend counts requests and connections; /slow waits for its
// client to leave (2s at most).
type abuseBackend struct {
	tb                          *testBackend
	hits, conns, open, inflight atomic.Int64
	peakOpen, peakInflight      atomic.Int64
}

func newAbuseBackend(t *testing.T) *abuseBackend {
	be := &abuseBackend{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		be.hits.Add(1)
		peak(&be.peakInflight, be.inflight.Add(1))
		defer be.inflight.Add(-1)
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			be.conns.Add(1)
			peak(&be.peakOpen, be.open.Add(1))
		case http.StateClosed, http.StateHijacked:
			be.open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	be.tb = &testBackend{id: "a", srv: srv}
	return be
}

// settle waits (10s at most) for the requests of the case before to
// end, and zeroes the counts.
func (be *abuseBackend) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for be.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d backend requests still in flight after 10s", be.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	be.hits.Store(0)
	be.conns.Store(0)
	be.peakOpen.Store(be.open.Load())
	be.peakInflight.Store(0)
}

func peak(p *atomic.Int64, v int64) {
	for {
		old := p.Load()
		if v <= old || p.CompareAndSwap(old, v) {
			return
		}
	}
}

// sampler records the process's peak goroutines and heap in use (over
// its start) every 2 ms: figures, not a wait.
type sampler struct {
	stopc chan struct{}
	done  chan struct{}
	peakG int
	heap0 uint64
	peakH uint64
}

func startSampler() *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heap0 = ms.HeapInuse
	go func() {
		defer close(s.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if g := runtime.NumGoroutine(); g > s.peakG {
				s.peakG = g
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.heap0 && ms.HeapInuse-s.heap0 > s.peakH {
				s.peakH = ms.HeapInuse - s.heap0
			}
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() (peakGoroutines int, peakHeap uint64) {
	close(s.stopc)
	<-s.done
	return s.peakG, s.peakH
}

// settledGoroutines waits (10s at most) for the goroutine count to come
// down to at most want+10 (want 0: for it to stop moving) and returns it.
func settledGoroutines(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n := runtime.NumGoroutine()
		if (want == 0 && n == last) || (want > 0 && n <= want+10) {
			return n
		}
		last = n
	}
	if want > 0 {
		t.Fatalf("goroutines %d, not back to %d (+10) after 10s", last, want)
	}
	return last
}

// h2cHTTPClient is an HTTP client speaking h2c with prior knowledge.
func h2cHTTPClient() *http.Client {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// h2cGet GETs url over h2c and wants a 200 in HTTP/2.
func h2cGet(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return errors.New("answered " + resp.Proto + " " + resp.Status)
	}
	return nil
}

// cpuTime is the process's CPU time (user and system) so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
