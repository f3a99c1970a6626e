package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// The hostile process's scale: what two shared cores do in about a
// minute, each case held long enough to sample its peak.
const (
	hpMaxConns     = 1200    // server.max_connections
	hpHeadMemory   = 4 << 20 // server.max_header_memory: 64 heads of 64 KB at once
	hpHandshake    = 3 * time.Second
	hpStreams      = 100 // server.max_concurrent_streams (default)
	hpPerConn      = 32  // server.max_backend_connections_per_connection (default)
	hpSlow         = 3 * time.Second
	hpLegitClients = 24
	hpLegitWorkers = 4
	hpBackends     = 3
	hpHeadBytes    = 64 << 10 // server.max_header_bytes (default)
)

// bound is one case's stated limits on the process's costs, each a
// formula of the config and the case's load over the costs before it
// (base).
type bound struct {
	fds, goroutines, backend int
	rss                      int64
	text                     string // the formulas, for the table
}

// violations lists the costs in c over b.
func (b bound) violations(c procCost) []string {
	var v []string
	if c.fds > b.fds {
		v = append(v, fmt.Sprintf("fds %d > %d", c.fds, b.fds))
	}
	if c.goroutines > b.goroutines {
		v = append(v, fmt.Sprintf("goroutines %d > %d", c.goroutines, b.goroutines))
	}
	if c.backend > b.backend {
		v = append(v, fmt.Sprintf("backend conns %d > %d", c.backend, b.backend))
	}
	if c.rss > b.rss {
		v = append(v, fmt.Sprintf("RSS %.1f MB > %.1f MB", float64(c.rss)/(1<<20), float64(b.rss)/(1<<20)))
	}
	return v
}

// hpBackend is a real HTTP backend: / answers at once with its id, /slow
// after hpSlow (counting the requests it holds).
type hpBackend struct {
	id   string
	srv  *httptest.Server
	slow atomic.Int64
}

func startHPBackend(t *testing.T, id string) *hpBackend {
	b := &hpBackend{id: id}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			b.slow.Add(1)
			defer b.slow.Add(-1)
			time.Sleep(hpSlow)
		}
		w.Header().Set("X-Backend-Id", id)
		fmt.Fprintln(w, id)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// Issue 23, Done when: one real latch process (TLS, HTTP/2, Consul,
// Redis, real backends) meets each hostile client of the issue in turn
// while legitimate sticky traffic runs through it the whole time; each
// case's peak descriptors, goroutines, established backend connections
// and RSS stay under limits stated as formulas of the config, each case
// gets the answers it should, and the legitimate traffic sees 0 failed
// requests and 0 moved sessions. Its sessions were made under an old
// cookie secret (the process before it), so the rotation case is the
// legitimate traffic itself.
func TestHostileProcess(t *testing.T) {
	consul, redis := harness.StartConsul(t), harness.StartRedis(t)
	var backends []*hpBackend
	ports := map[int]bool{}
	for i := 1; i <= hpBackends; i++ {
		b := startHPBackend(t, fmt.Sprintf("web-%d", i))
		addr := strings.TrimPrefix(b.srv.URL, "http://")
		consul.Register(t, b.id, "web", addr)
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		ports[port] = true
		backends = append(backends, b)
	}
	ca, pair := certPair(t)
	start := func(secrets ...string) (*harness.LatchProcess, string) {
		cfg := harness.LatchConfig(consul.HTTPAddr, redis.URL, "web")
		addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
		cfg.Listen, cfg.Admin.Listen = addr, "127.0.0.1:"+strconv.Itoa(harness.FreePort(t))
		cfg.TLS.Certificates = []config.Certificate{pair}
		cfg.Cookie.Secrets = secrets
		cfg.Server.MaxConnections = config.Set(hpMaxConns)
		cfg.Server.MaxHeaderMemory = config.Set(int64(hpHeadMemory))
		cfg.Server.MaxHeaderBytes = config.Set(hpHeadBytes)
		cfg.Server.ReadHeaderTimeout = config.Set(hpHandshake)
		return harness.StartLatchProcess(t, nil, cfg), addr
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, MaxIdleConnsPerHost: hpLegitClients}
	t.Cleanup(tr.CloseIdleConnections)
	legit := newLoad("", hpLegitClients)
	for _, c := range legit.clients {
		c.Transport = tr
	}

	// The sessions, made under the old secret alone.
	old, oldAddr := start("old-secret-0123456789abcdef0123")
	legit.urls = []string{"https://" + oldAddr + "/"}
	harness.WaitFor(t, 15*time.Second, "every backend in latch's table", func() bool {
		seen := map[string]bool{}
		for range 30 {
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + oldAddr + "/")
			if err == nil {
				seen[resp.Header.Get("X-Backend-Id")] = true
				resp.Body.Close()
			}
		}
		return len(seen) == hpBackends
	})
	legit.warm(t)
	old.Stop()

	l, addr := start("new-secret-0123456789abcdef0123", "old-secret-0123456789abcdef0123")
	legit.urls = []string{"https://" + addr + "/"}
	legit.run(hpLegitWorkers, 40, 1<<30, 3*time.Minute)
	defer func() {
		select {
		case <-legit.stop:
		default:
			legit.halt()
		}
	}()
	legit.waitSent(t, 2*hpLegitClients) // every session rotated, the pool warm
	cost := func() procCost { return costOf(t, l.PID(), l.Admin, ports) }
	base := peakCost(t, time.Second, cost)
	refused := func(reason string) float64 {
		return max(metricValue(t, l.Admin, `latch_requests_refused_total{reason="`+reason+`"}`), 0)
	}

	var rows []string
	defer func() {
		t.Log("\n| case | load | limits over the base before the case | base | peak | answers |\n|---|---|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n")
	}()
	// The legitimate traffic holds at most a connection per worker to
	// each backend (the pool keeps them): backendLegit.
	backendLegit := hpLegitWorkers * hpBackends
	row := func(name, load string, b bound, peak procCost, answers string, ok bool) {
		v := b.violations(peak)
		verdict := answers
		if len(v) > 0 {
			verdict += "; OVER: " + strings.Join(v, ", ")
			t.Errorf("%s: over its limits: %s", name, strings.Join(v, ", "))
		}
		if !ok {
			t.Errorf("%s: answers %s", name, answers)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", name, load, b.text, base, peak, verdict))
	}
	// settle waits until the case's client connections and goroutines
	// are gone (backend connections it left idle in the pool stay, until
	// transport.idle_conn_timeout), and takes the next case's base.
	settle := func(what string) {
		harness.WaitFor(t, 20*time.Second, "the process back to its base after "+what, func() bool {
			c := cost()
			return c.fds-c.backend <= base.fds-base.backend+backendLegit && c.goroutines <= base.goroutines+2*backendLegit+20
		})
		base = peakCost(t, 500*time.Millisecond, cost)
	}
	mb := func(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }

	// 1. HTTP/2 streams announcing bodies that never come.
	{
		const conns = 8
		streams := conns * hpStreams
		var cs []*h2Conn
		for range conns {
			c := dialH2(t, addr, ca.Pool)
			for i := range hpStreams {
				if err := c.open(uint32(2*i+1), "POST", addr, "/upload", false, "content-length", "10"); err != nil {
					t.Fatal(err)
				}
			}
			cs = append(cs, c)
		}
		// Each stream's handler waits for its body: one goroutine apiece.
		harness.WaitFor(t, 20*time.Second, "every stream in a handler", func() bool { return cost().goroutines >= base.goroutines+streams })
		peak := peakCost(t, time.Second, cost)
		b := bound{
			fds: base.fds + conns + backendLegit, goroutines: base.goroutines + 4*conns + 2*streams + 2*backendLegit,
			backend: base.backend + backendLegit, rss: base.rss + int64(streams)*32<<10,
			text: "fds ≤ base + conns + legit; goroutines ≤ base + 4·conns + 2·streams + 2·legit; backend ≤ base + legit (none taken before a body byte); RSS ≤ base + streams × 32 KiB (" + mb(int64(streams)*32<<10) + ")",
		}
		got := map[int]int{}
		for _, c := range cs {
			c.statuses(got)
		}
		row("HTTP/2 streams, bodies never come", fmt.Sprintf("%d conns × %d POST streams, content-length 10, no byte", conns, hpStreams), b, peak,
			fmt.Sprintf("%d streams open, answered before body_timeout: %v", streams, got), len(got) == 0)
		for _, c := range cs {
			c.tc.Close()
		}
		settle("the waiting streams")
	}

	// 2. HTTP/2 streams at a slow backend: the per-connection budget.
	{
		const conns = 4
		refused0 := refused("conn_backends")
		var cs []*h2Conn
		for range conns {
			c := dialH2(t, addr, ca.Pool)
			for i := range hpStreams {
				if err := c.open(uint32(2*i+1), "GET", addr, "/slow", true); err != nil {
					t.Fatal(err)
				}
			}
			cs = append(cs, c)
		}
		held := func() (n int64) {
			for _, b := range backends {
				n += b.slow.Load()
			}
			return n
		}
		harness.WaitFor(t, 10*time.Second, "the budget of every connection at the backends", func() bool { return held() >= conns*hpPerConn })
		peak := peakCost(t, time.Second, cost)
		heldPeak := held()
		answered := func() map[int]int {
			got := map[int]int{}
			for _, c := range cs {
				c.statuses(got)
			}
			return got
		}
		harness.WaitFor(t, 3*hpSlow, "every stream answered", func() bool {
			n := 0
			for _, v := range answered() {
				n += v
			}
			return n == conns*hpStreams
		})
		got, refusedN := answered(), refused("conn_backends")-refused0
		b := bound{
			fds: base.fds + conns + conns*hpPerConn + backendLegit, goroutines: base.goroutines + 4*conns + 2*conns*hpStreams + 2*backendLegit,
			backend: base.backend + conns*hpPerConn + backendLegit, rss: base.rss + int64(conns*hpStreams)*64<<10,
			text: "backend ≤ base + conns × max_backend_connections_per_connection + legit; fds ≤ base + conns + that; goroutines ≤ base + 4·conns + 2·streams + 2·legit; RSS ≤ base + streams × 64 KiB",
		}
		want := map[int]int{200: conns * hpPerConn, 503: conns * (hpStreams - hpPerConn)}
		row("HTTP/2 streams at a slow backend", fmt.Sprintf("%d conns × %d GET streams, backend answers after %s, queue wait dial_timeout 2s", conns, hpStreams, hpSlow), b, peak,
			fmt.Sprintf("%v (want %v); %.0f counted conn_backends; %d held at the backends at most", got, want, refusedN, heldPeak),
			got[200] == want[200] && got[503] == want[503] && refusedN == float64(want[503]) && heldPeak <= conns*hpPerConn)
		for _, c := range cs {
			c.tc.Close()
		}
		settle("the slow streams")
	}

	// 3. Half-open TLS handshakes.
	{
		const n = 800
		open0 := metricValue(t, l.Admin, "latch_connections_open")
		var cs []net.Conn
		for range n {
			c, err := stalledHandshake(addr)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		counted := func() float64 { return metricValue(t, l.Admin, "latch_connections_open") - open0 }
		harness.WaitFor(t, 10*time.Second, "the handshakes counted as connections", func() bool { return counted() >= n })
		peak := peakCost(t, time.Second, cost)
		began := time.Now()
		harness.WaitFor(t, hpHandshake+15*time.Second, "the handshakes timed out", func() bool { return counted() <= 0 })
		b := bound{
			fds: base.fds + n + backendLegit, goroutines: base.goroutines + 2*n + 2*backendLegit,
			backend: base.backend + backendLegit, rss: base.rss + n*48<<10,
			text: fmt.Sprintf("each counted in latch_connections_open (≤ max_connections %d); fds ≤ base + n + legit; goroutines ≤ base + 2·n + 2·legit; backend ≤ base + legit; RSS ≤ base + n × 48 KiB (%s)", hpMaxConns, mb(n*48<<10)),
		}
		row("half-open TLS handshakes", fmt.Sprintf("%d TCP conns, 5-byte record header announcing 16 KB, then nothing", n), b, peak,
			fmt.Sprintf("%d counted open; closed by latch %.1fs after the peak (handshake timeout = read_header_timeout %s)", n, time.Since(began).Seconds(), hpHandshake), true)
		settle("the handshakes")
	}

	// 4. Maximum-size heads at many connections: under max_header_memory
	// (every head served), and over it (some refused 503).
	for _, conns := range []int{hpHeadMemory / hpHeadBytes * 3 / 4, 200} {
		const size, run = 64000, 4 * time.Second
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		end := time.Now().Add(run)
		var peak procCost
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			time.Sleep(run / 4)
			peak = peakCost(t, run/2, cost)
		}()
		head := bigHead(addr, size)
		for range conns {
			wg.Go(func() {
				var h *h1TLS
				for time.Now().Before(end) {
					var err error
					if h == nil {
						if h, err = dialH1TLS(addr, ca.Pool); err != nil {
							mu.Lock()
							got["dial: "+err.Error()]++
							mu.Unlock()
							return
						}
					}
					code, err := h.do(head)
					mu.Lock()
					if code == 0 {
						got["reset"]++ // refused 503 and closed while the client still wrote its head
					} else {
						got[strconv.Itoa(code)]++
					}
					mu.Unlock()
					if err != nil {
						h.c.Close()
						h = nil
					}
				}
				if h != nil {
					h.c.Close()
				}
			})
		}
		wg.Wait()
		<-sampled
		perConn := float64(peak.rss-base.rss) / float64(conns)
		perConnMax := int64(2 * (3*hpHeadBytes + 96<<10))
		b := bound{
			fds: base.fds + 2*conns + backendLegit, goroutines: base.goroutines + 4*conns + 2*backendLegit,
			backend: base.backend + conns + backendLegit, rss: base.rss + int64(conns)*perConnMax,
			text: fmt.Sprintf("backend ≤ base + conns + legit (one request a connection at a time); fds ≤ base + 2·conns + legit; goroutines ≤ base + 4·conns + 2·legit; "+
				"RSS ≤ base + conns × 2 (GOGC) × (3 × max_header_bytes (the read buffer, the head, the outbound head) + 96 KiB (TLS records, the backend connection's buffers)) = %s", mb(int64(conns)*perConnMax)),
		}
		under := conns*hpHeadBytes < hpHeadMemory
		ok := got["200"] > 0
		for k := range got {
			ok = ok && (k == "200" || (!under && (k == "503" || k == "reset")))
		}
		budget := "over"
		if under {
			budget = "under"
		}
		row("maximum-size heads, "+budget+" max_header_memory", fmt.Sprintf("%d TLS conns, each sending %d-byte heads for %s", conns, size, run), b, peak,
			fmt.Sprintf("%v (503: max_header_memory); %.0f KB RSS a connection", got, perConn/1024), ok)
		settle("the big heads")
	}

	// 5. 10,000 tiny header fields.
	{
		const conns = 20
		got := map[string]int{}
		for range conns {
			h, err := dialH1TLS(addr, ca.Pool)
			if err != nil {
				t.Fatal(err)
			}
			code, err := h.do(manyFields(addr, 10000))
			if err == nil {
				got[strconv.Itoa(code)+", kept open"]++
			} else {
				got[strconv.Itoa(code)+", closed"]++
			}
			h.c.Close()
		}
		peak := cost()
		b := bound{fds: base.fds + conns + backendLegit, goroutines: base.goroutines + 2*backendLegit + 20, backend: base.backend + backendLegit, rss: base.rss + 32<<20,
			text: "431 before any backend: fds ≤ base + conns (closing) + legit; goroutines, backend conns at base (± legit); RSS ≤ base + 32 MB"}
		row("10,000 tiny headers", fmt.Sprintf("%d requests of 10,000 fields `X: a`", conns), b, peak,
			fmt.Sprintf("%v", got), got["431, closed"] == conns)
		settle("the many fields")
	}

	// 6. Cross-site and rebinding admin requests.
	{
		type adminCase struct {
			name, method, path string
			header             map[string]string
			want               int
		}
		cases := []adminCase{
			{"cross-site drain (Origin)", "POST", "/admin/backends/web-1/drain", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, 403},
			{"cross-site reload (Sec-Fetch-Site)", "POST", "/admin/reload", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
			{"form-encoded drain, no Origin", "POST", "/admin/backends/web-1/drain", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
			{"rebinding Host", "GET", "/admin/status", map[string]string{"Host": "rebind.evil.example"}, 403},
		}
		admin := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
		defer admin.CloseIdleConnections()
		var answers []string
		ok := true
		for _, c := range cases {
			req, _ := http.NewRequest(c.method, l.Admin+c.path, strings.NewReader(""))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			if h := c.header["Host"]; h != "" {
				req.Host = h
			}
			resp, err := admin.Do(req)
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			ok = ok && code == c.want
			answers = append(answers, fmt.Sprintf("%s: %d (want %d)", c.name, code, c.want))
		}
		peak := cost()
		b := bound{fds: base.fds + len(cases) + backendLegit, goroutines: base.goroutines + 2*len(cases) + 2*backendLegit + 20, backend: base.backend + backendLegit, rss: base.rss + 32<<20,
			text: "refused before any state changes: fds ≤ base + requests (kept alive) + legit; goroutines, backend conns, RSS at base (± legit)"}
		row("admin API from a browser", "4 requests, no admin token", b, peak, strings.Join(answers, "; "), ok)
	}

	// 7. Old-secret cookies: the legitimate sessions themselves.
	legit.halt()
	sent, failed, errs := legit.stats()
	moved := legit.movedClients()
	reissued := metricValue(t, l.Admin, "latch_cookie_reissued_total")
	row("old-secret cookies", fmt.Sprintf("%d sessions made under cookie.secrets [old], served by [new, old]", hpLegitClients),
		bound{fds: base.fds + backendLegit, goroutines: base.goroutines + 2*backendLegit + 20, backend: base.backend + backendLegit, rss: base.rss + 32<<20, text: "costs at base (± legit)"}, cost(),
		fmt.Sprintf("%.0f reissued under the new secret (want %d); legitimate traffic: %d requests, %d failed, %d sessions moved", reissued, hpLegitClients, sent, failed, moved),
		reissued == hpLegitClients && failed == 0 && moved == 0)
	if failed > 0 {
		t.Errorf("legitimate requests failed: %v", errs)
	}
	if moved > 0 {
		t.Errorf("legitimate sessions moved: %v", legit.moveLog)
	}
}
