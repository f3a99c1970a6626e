package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// rawBackend is a backend written byte for byte: each request gets the
// response its path names, so the tests control framing exactly.
type rawBackend struct {
	ln       net.Listener
	accepted atomic.Int64
	served   atomic.Int64
	hungUp   atomic.Int64 // connections latch closed
	mu       sync.Mutex
	heads    []string // every request head received
	conns    []net.Conn
	respond  func(path string) (response string, closeAfter bool)
	script   func(c net.Conn, path string) (closeAfter bool) // instead of respond
	wg       sync.WaitGroup
}

func newRawBackend(t *testing.T, respond func(path string) (string, bool)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, respond: respond}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Go(func() { b.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if errors.Is(err, io.EOF) {
					b.hungUp.Add(1)
				}
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		b.mu.Lock()
		b.heads = append(b.heads, head.String())
		b.mu.Unlock()
		b.served.Add(1)
		path := strings.Fields(head.String())[1]
		if b.script != nil {
			if b.script(c, path) {
				return
			}
			continue
		}
		resp, closeAfter := b.respond(path)
		if _, err := io.WriteString(c, resp); err != nil || closeAfter {
			return
		}
	}
}

func (b *rawBackend) lastHead() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.heads[len(b.heads)-1]
}

func (b *rawBackend) backend() discovery.Backend {
	return discovery.Backend{ID: "raw", Service: "web", Addr: b.ln.Addr().String(), Weight: 1, Health: discovery.Passing}
}

// startRawGateway runs a gateway whose only backend is b.
func startRawGateway(t *testing.T, b *rawBackend, mutate func(*config.Config)) *testGateway {
	t.Helper()
	tg := startGateway(t, func(c *config.Config) {
		c.Defaults.Retry.Attempts = config.Set(1)
		if mutate != nil {
			mutate(c)
		}
	}, newBackend(t, "placeholder"))
	tg.static.Set("web", []discovery.Backend{b.backend()})
	waitUntil(t, "raw backend in rotation", func() bool {
		set := firstRoute(tg.g).Set()
		return set != nil && len(set.Backends) == 1 && set.Backends[0].ID == "raw"
	})
	return tg
}

func (tg *testGateway) do(t *testing.T, method, path string, header http.Header) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, tg.url+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// The fast path relays every framing a backend may use, drops hop-by-hop
// headers, and reuses the connection exactly when HTTP/1.1 allows.
func TestFastPathFraming(t *testing.T) {
	responses := map[string]struct {
		resp  string
		close bool
	}{
		"/length":  {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: a\r\n\r\nhello", false},
		"/chunked": {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", false},
		"/both":    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
		"/10-te":   {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		"/10-keep": {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false},
		"/eof":     {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", true},
		"/http10":  {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", false},
		"/interim": {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		"/hop":     {"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", false},
		"/nobody":  {"HTTP/1.1 204 No Content\r\nX-App: n\r\n\r\n", false},
		"/head":    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false}, // answers HEAD
		"/closing": {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true},
	}
	b := newRawBackend(t, func(path string) (string, bool) {
		r := responses[path]
		return r.resp, r.close
	})
	tg := startRawGateway(t, b, nil)

	for _, tc := range []struct {
		method, path, body string
		header, trailer    map[string]string
		reused             bool // the next request goes on the same backend connection
	}{
		{"GET", "/length", "hello", map[string]string{"X-App": "a", "Content-Length": "5"}, nil, true},
		{"GET", "/chunked", "hello world", nil, map[string]string{"X-Sum": "42"}, true},
		{"GET", "/both", "hello", map[string]string{"Content-Length": ""}, nil, false}, // ambiguous: not reused
		{"GET", "/10-te", "ok", nil, nil, false},                                       // Transfer-Encoding in HTTP/1.0: faulty framing
		{"GET", "/10-keep", "ok", nil, nil, true},
		{"GET", "/eof", "until close", map[string]string{"Content-Type": "text/plain"}, nil, false},
		{"GET", "/http10", "abc", nil, nil, false},
		{"GET", "/interim", "ok", map[string]string{"Link": ""}, nil, true},
		{"GET", "/hop", "ok", map[string]string{"X-Secret": "", "Keep-Alive": "", "Connection": ""}, nil, true},
		{"GET", "/nobody", "", map[string]string{"X-App": "n"}, nil, true},
		{"HEAD", "/head", "", map[string]string{"Content-Length": "5"}, nil, true},
		{"GET", "/closing", "ok", nil, nil, false},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			before := b.accepted.Load()
			resp, body, err := tg.do(t, tc.method, tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode/100 != 2 || body != tc.body {
				t.Fatalf("got %d %q; want 2xx %q", resp.StatusCode, body, tc.body)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q; want %q", k, got, v)
				}
			}
			for k, v := range tc.trailer {
				if got := resp.Trailer.Get(k); got != v {
					t.Errorf("trailer %s = %q; want %q", k, got, v)
				}
			}
			// The next request shows whether the connection went back to the pool.
			if _, body, err := tg.do(t, "GET", "/length", nil); err != nil || body != "hello" {
				t.Fatalf("follow-up: %q, %v", body, err)
			}
			if reused := b.accepted.Load() == max(before, 1); reused != tc.reused {
				t.Errorf("connections %d → %d: reused=%v; want %v", before, b.accepted.Load(), reused, tc.reused)
			}
		})
	}
}

// A backend answer latch cannot frame safely is a 502, never relayed.
func TestFastPathMalformedResponses(t *testing.T) {
	responses := map[string]string{
		"/two-lengths": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"/bad-length":  "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"/folded":      "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\nContent-Length: 0\r\n\r\n",
		"/space-colon": "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
		"/status":      "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"/proto":       "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"/switch":      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"/cr-in-value": "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
		"/signed":      "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: +2\r\n\r\nok",
		"/coding":      "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"/interims":    strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
	}
	b := newRawBackend(t, func(path string) (string, bool) { return responses[path], true })
	tg := startRawGateway(t, b, func(c *config.Config) { c.Defaults.Breaker.ConsecutiveFailures = config.Set[uint32](1000) })
	for path := range responses {
		resp, body, err := tg.do(t, "GET", path, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-A") != "" {
			t.Errorf("%s: got %d %q; want 502 with none of the backend's headers", path, resp.StatusCode, body)
		}
	}
}

// A body shorter than its Content-Length cuts the client's response too:
// the client must not take a truncated body for a whole one.
func TestFastPathTruncatedBodyAborts(t *testing.T) {
	b := newRawBackend(t, func(string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true
	})
	tg := startRawGateway(t, b, nil)
	_, body, err := tg.do(t, "GET", "/", nil)
	if err == nil {
		t.Fatalf("read %q without an error; want the response cut", body)
	}
}

// A pooled connection the backend closed while idle is replaced without
// the client noticing, and the request reaches the backend once.
func TestFastPathStaleConnectionRetried(t *testing.T) {
	b := newRawBackend(t, func(string) (string, bool) {
		// Closes after each answer without saying so, as a backend whose
		// keep-alive timeout fired between two requests.
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	tg := startRawGateway(t, b, nil)
	for i := range 5 {
		resp, body, err := tg.do(t, "GET", "/", nil)
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %v %q", i, err, body)
		}
	}
	if got := b.served.Load(); got != 5 {
		t.Fatalf("backend served %d requests; want each of the 5 once", got)
	}
}

// The request head the backend gets: origin-form target, the client's
// host, no hop-by-hop headers, X-Forwarded-* by the trust rules.
func TestFastPathRequestHead(t *testing.T) {
	b := newRawBackend(t, func(string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	tg := startRawGateway(t, b, func(c *config.Config) {
		c.Routes[0].PathPrefix = "/api"
		c.Routes[0].StripPrefix = true
	})
	req, _ := http.NewRequest(http.MethodGet, tg.url+"/api/v1/items?q=1", nil)
	req.Host = "shop.example"
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic eA==")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	head := b.lastHead()
	if !strings.HasPrefix(head, "GET /v1/items?q=1 HTTP/1.1\r\n") {
		t.Errorf("request line of %q; want the prefix stripped and the query kept", head)
	}
	for _, want := range []string{"Host: shop.example\r\n", "Te: trailers\r\n", "X-Multi: a\r\nX-Multi: b\r\n",
		"X-Forwarded-For: 127.0.0.1\r\n", "X-Forwarded-Host: shop.example\r\n", "X-Forwarded-Proto: http\r\n", "X-Request-Id: "} {
		if !strings.Contains(head, want) {
			t.Errorf("head %q lacks %q", head, want)
		}
	}
	for _, unwanted := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Connection", "6.6.6.6"} {
		if strings.Contains(head, unwanted) {
			t.Errorf("head %q carries %q", head, unwanted)
		}
	}
}

// ResponseHeaderTimeout bounds the wait for a backend's answer: 504. A
// slow answer on a reused connection is not mistaken for a stale
// connection: the request is not sent twice.
func TestFastPathHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	b := newRawBackend(t, func(path string) (string, bool) {
		if path == "/slow" {
			<-release
			return "", true
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	t.Cleanup(func() { close(release) }) // runs before the backend's cleanup
	tg := startRawGateway(t, b, func(c *config.Config) { c.Transport.ResponseHeaderTimeout = config.Set(50 * time.Millisecond) })
	if _, body, err := tg.do(t, "GET", "/fast", nil); err != nil || body != "ok" {
		t.Fatalf("GET /fast: %q, %v", body, err)
	}
	resp, body, err := tg.do(t, "GET", "/slow", nil)
	if err != nil || resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("got %v %v %q; want 504", resp, err, body)
	}
	if n := b.served.Load(); n != 2 {
		t.Fatalf("backend got %d requests; want 2 (the slow one once)", n)
	}
}

// A client that goes away takes its backend request with it: latch closes
// the backend connection instead of waiting for an answer nobody reads.
func TestFastPathClientGoneClosesBackendConn(t *testing.T) {
	waiting := make(chan struct{}, 1)
	b := newRawBackend(t, func(string) (string, bool) {
		waiting <- struct{}{}
		return "", false // answers nothing; the connection stays open
	})
	tg := startRawGateway(t, b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.url+"/", nil)
		resp, err := tg.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-waiting
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v; want canceled", err)
	}
	waitUntil(t, "latch to close the backend connection", func() bool { return b.hungUp.Load() == 1 })
}

// scriptBackend runs script on each request's connection: the tests that
// need a backend to misbehave between requests.
func newScriptBackend(t *testing.T, script func(c net.Conn, path string) (closeConn bool)) *rawBackend {
	t.Helper()
	b := newRawBackend(t, nil)
	b.script = script
	return b
}

// Bytes a backend sends on an idle connection — a body it should not have
// sent with a HEAD answer, a 408 before closing — are never read as the
// next request's response, which may be another client's.
func TestFastPathIdleConnectionBytesNotRelayed(t *testing.T) {
	for name, late := range map[string]string{
		"late body":      "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON",
		"408 then close": "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			misbehave, sent := make(chan struct{}), make(chan struct{})
			b := newScriptBackend(t, func(c net.Conn, path string) bool {
				if path != "/first" {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					return false
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				<-misbehave // latch has the connection back in its pool
				_, _ = io.WriteString(c, late)
				close(sent)
				return true
			})
			tg := startRawGateway(t, b, nil)
			if _, body, err := tg.do(t, "GET", "/first", nil); err != nil || body != "ok" {
				t.Fatalf("first: %q, %v", body, err)
			}
			close(misbehave)
			<-sent
			resp, body, err := tg.do(t, "GET", "/second", nil)
			if err != nil || resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("second request got %v %q (%v); want 200 \"ok\" from a new connection", resp.Status, body, err)
			}
		})
	}
}

// A route timeout during the body cuts the client's connection: a
// streamed body must not end as if it were whole. The breaker counts it.
func TestFastPathTimeoutMidBodyAborts(t *testing.T) {
	release := make(chan struct{})
	b := newScriptBackend(t, func(c net.Conn, path string) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		<-release
		return true
	})
	t.Cleanup(func() { close(release) })
	tg := startRawGateway(t, b, func(c *config.Config) { c.Defaults.Timeout = config.Set(100 * time.Millisecond) })
	if _, body, err := tg.do(t, "GET", "/stream", nil); err == nil {
		t.Fatalf("read %q as a complete body; want the response cut", body)
	}
}

// Queries ReverseProxy cleans (';', bad escapes: CVE-2022-2880) reach the
// backend the same on both paths.
func TestFastPathQueryCleanedLikeReverseProxy(t *testing.T) {
	b := newRawBackend(t, func(string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	tg := startRawGateway(t, b, nil)
	for _, q := range []string{"a=1;admin=1", "a=%zz&b=2", "a=1&b=%41"} {
		var targets []string
		for _, method := range []string{"POST", "GET"} { // ReverseProxy's path, then the fast path's
			if _, _, err := tg.do(t, method, "/q?"+q, nil); err != nil {
				t.Fatal(err)
			}
			targets = append(targets, strings.Fields(b.lastHead())[1])
		}
		if targets[0] != targets[1] {
			t.Errorf("?%s: ReverseProxy sent %q, the fast path %q", q, targets[0], targets[1])
		}
	}
}
