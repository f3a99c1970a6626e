package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// TestHostileInput is the hostile-input table (issue 17, items 3 and 5):
// requests an attacker crafts to smuggle, spoof or exhaust, each sent as
// raw bytes to a gateway on loopback in front of a backend that counts
// what it receives and echoes the fields it got. Every row says what it
// sent, what latch must answer and what it did; `make test` prints it.
// Client body faults and response framing are TestHostileClientFaults'.
func TestHostileInput(t *testing.T) {
	echo := newEchoBackend(t)
	gws := map[string]*testGateway{}
	gw := func(name string) *testGateway {
		if g := gws[name]; g != nil {
			return g
		}
		mutate := map[string]func(*config.Config){
			"h1":       func(c *config.Config) { c.Server.Implementation = "h1" },
			"chunks":   func(c *config.Config) { c.Server.Implementation = "h1" },
			"net/http": func(c *config.Config) { c.Server.Implementation = "net/http" },
			"trusting": func(c *config.Config) {
				c.Server.Implementation, c.Server.AllowTrace = "h1", true
				c.TrustedProxies = config.List{"127.0.0.1/32"}
			},
			"max_connections=2": func(c *config.Config) {
				c.Server.Implementation, c.Server.MaxConnections = "h1", config.Set(2)
			},
			"max_connections_per_ip=1": func(c *config.Config) {
				c.Server.Implementation, c.Server.MaxConnectionsPerIP = "h1", 1
			},
			"net/http, max_connections=1": func(c *config.Config) {
				c.Server.Implementation, c.Server.MaxConnections = "net/http", config.Set(1)
			},
		}[name]
		gws[name] = startGatewayWith(t, mutate, nil, []discovery.Backend{echo.backend()})
		return gws[name]
	}

	const post = "POST / HTTP/1.1\r\nHost: h\r\n"
	chunked := func(body string) string { return post + "Transfer-Encoding: chunked\r\n\r\n" + body }
	get := func(field string) string { return "GET / HTTP/1.1\r\nHost: h\r\n" + field + "\r\n\r\n" }
	rows := []hostileRow{
		// Item 5: framing latch refuses before anything reaches a backend.
		{name: "obs-fold", raw: get("X-A: 1\r\n  folded"), status: 400, close: true},
		{name: "TE xchunked", raw: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE chunked, chunked", raw: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE chunked, gzip", raw: post + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE empty", raw: post + "Transfer-Encoding: \r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE leading comma", raw: post + "Transfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE trailing comma", raw: post + "Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE parameter", raw: post + "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE twice", raw: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE identity", raw: post + "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE Chunked with Content-Length", raw: post + "Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE folded", raw: post + "Transfer-Encoding: chunked\r\n , identity\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE in HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		// Item 3: CL + TE is rejected (400) and the connection closed: the
		// pipelined request behind it is never served.
		{name: "CL+TE, then a pipelined GET", raw: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, close: true},
		{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost: \r\n\r\n", status: 400, close: true},
		{name: "non-ASCII target", raw: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, close: true},
		{name: "overlong UTF-8 target", raw: "GET /\xc0\xae\xc0\xae/etc HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, close: true},
		{name: "100 KB method", raw: strings.Repeat("G", 100<<10) + " / HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, close: true},
		{name: "CONNECT", raw: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", status: 501, close: true},
		{name: "Upgrade not a token (FuzzRequestPath)", raw: get("Upgrade: \xa0websocket\r\nConnection: Upgrade"), status: 400, close: true},
		// Item 5		// Item 3: TRACE, and client-address fields from an untrusted peer.
		{name: "TRACE", raw: "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", status: 405},
		{name: "TRACE, server.allow_trace", gw: "trusting", raw: "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, reach: true},
		// Issue 23: no cap on the number of fields (10,000 went through).
		{name: "100 header fields", raw: get(xFields(99)), status: 200, reach: true},
		{name: "101 header fields", raw: get(xFields(100)), status: 431, close: true},
		{name: "10,000 header fields", raw: get(xFields(10000)), status: 431, close: true},
		{name: "100 header fields", gw: "net/http", raw: get(xFields(99)), status: 200, reach: true},
		{name: "101 header fields", gw: "net/http", raw: get(xFields(100)), status: 431, close: true},
		{name: "X-Real-IP", raw: get("X-Real-IP: 10.6.6.6"), status: 200, reach: true, dropped: "X-Real-Ip"},
		{name: "True-Client-IP", raw: get("True-Client-IP: 10.6.6.6"), status: 200, reach: true, dropped: "True-Client-Ip"},
		{name: "CF-Connecting-IP", raw: get("CF-Connecting-IP: 10.6.6.6"), status: 200, reach: true, dropped: "Cf-Connecting-Ip"},
		{name: "X_Forwarded_For (underscore)", raw: get("X_Forwarded_For: 10.6.6.6"), status: 200, reach: true, dropped: "X_forwarded_for"},
		{name: "Forwarded", raw: get("Forwarded: for=10.6.6.6"), status: 200, reach: true, dropped: "for=10.6.6.6"},
		{name: "X-Forwarded-Port", raw: get("X-Forwarded-Port: 1"), status: 200, reach: true, dropped: "X-Forwarded-Port"},
		{name: "X-Forwarded-For", raw: get("X-Forwarded-For: 10.6.6.6"), status: 200, reach: true, dropped: "10.6.6.6"},
		{name: "X-Real-IP, trusted peer", gw: "trusting", raw: get("X-Real-IP: 10.6.6.6"), status: 200, reach: true, kept: "X-Real-Ip: 10.6.6.6"},
		{name: "X_Real_IP, trusted peer", gw: "trusting", raw: get("X_Real_IP: 10.6.6.6"), status: 200, reach: true, dropped: "X_real_ip"},
		// On server.implementation net/http: what the screen middleware
		// catches after Go's parser (see the README for what it cannot).
		{name: "empty Host", gw: "net/http", raw: "GET / HTTP/1.1\r\nHost: \r\n\r\n", status: 400, close: true},
		{name: "non-ASCII target", gw: "net/http", raw: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, close: true},
		{name: "CONNECT", gw: "net/http", raw: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", status: 501, close: true},
		{name: "TRACE", gw: "net/http", raw: "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", status: 405},
		{name: "CL+TE: chunked, then close", gw: "net/http", raw: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, close: true, reach: true},
		// Item 5: malformed chunk framing is the client's: 400 (not 502, nor
		// 503 once the backend's breaker opened over them) and close, one
		// after another on one gateway. The head may reach the backend (the
		// body streams); what the backend is charged is
		// TestHostileClientFaults'.
		{name: "chunk: bare ;", raw: chunked("3;\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: 1_0", raw: chunked("1_0\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: 0x5", raw: chunked("0x5\r\nabcde\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: leading space", raw: chunked(" 3\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: missing CRLF after data", raw: chunked("3\r\nabc0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: data past the size", raw: chunked("3\r\nabcdef\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: control byte in extension", raw: chunked("3;a=\x01\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: bare CR in extension", raw: chunked("3;a\rb\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: bare LF in extension", raw: chunked("3;a\nb\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: negative size", raw: chunked("-3\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: overflowing size", raw: chunked("10000000000000003\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: bare-LF terminators", raw: chunked("3\nabc\n0\n\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
		{name: "chunk: 64 KiB extension", raw: chunked("3;a=" + strings.Repeat("b", 64<<10) + "\r\nabc\r\n0\r\n\r\n"), status: 400, close: true, mayReach: true, gw: "chunks"},
	}
	fmt.Printf("\n%-48s %-36s %s\n", "input (server)", "expected", "got")
	for _, row := range rows {
		if row.gw == "" {
			row.gw = "h1"
		}
		tg := gw(row.gw)
		before := echo.hits.Load()
		got := sendRaw(tg.url, row.raw)
		reached := echo.hits.Load() - before
		ok := got.status == row.status && (!row.close || got.closed) && (row.reach == (reached > 0) || row.mayReach)
		if row.dropped != "" && strings.Contains(got.body, row.dropped) || row.kept != "" && !strings.Contains(got.body, row.kept) {
			ok = false
		}
		want := fmt.Sprintf("%d", row.status)
		if row.close {
			want += ", close"
		}
		switch {
		case row.dropped != "":
			want += ", backend without " + row.dropped
		case row.kept != "":
			want += ", backend with " + row.kept
		case !row.reach && !row.mayReach:
			want += ", backend untouched"
		}
		gotS := fmt.Sprintf("%d, closed=%v, backend saw %d", got.status, got.closed, reached)
		if got.err != nil {
			gotS += " (" + got.err.Error() + ")"
		}
		hostileLine(t, fmt.Sprintf("%s (%s)", row.name, row.gw), want, gotS, ok)
	}

	// Item 3: connection caps. Two connections held open; the third is
	// answered 503 and closed, and counted; once one closes, a new one is
	// served.
	for _, c := range []struct {
		gw, label string
		held      int
	}{{"max_connections=2", "total", 2}, {"max_connections_per_ip=1", "per_ip", 1}, {"net/http, max_connections=1", "total", 1}} {
		tg := gw(c.gw)
		var held []net.Conn
		for range c.held {
			conn, r := dialServed(t, tg.url)
			if r.status != 200 {
				t.Fatalf("%s: a connection under the cap got %d (%v)", c.gw, r.status, r.err)
			}
			held = append(held, conn)
		}
		over := sendRaw(tg.url, get(""))
		refused := counter(t, tg.g, "latch_connections_refused_total", map[string]string{"limit": c.label})
		hostileLine(t, fmt.Sprintf("connection %d (%s)", c.held+1, c.gw),
			"503, close, counted", fmt.Sprintf("%d, closed=%v, latch_connections_refused_total{limit=%q}=%v", over.status, over.closed, c.label, refused),
			over.status == 503 && over.closed && refused == 1)
		held[0].Close()
		waitUntil(t, "the closed connection counted out", func() bool {
			return counter(t, tg.g, "latch_connections_open", nil) == float64(c.held-1)
		})
		again := sendRaw(tg.url, get(""))
		hostileLine(t, fmt.Sprintf("a connection after one closed (%s)", c.gw), "200", strconv.Itoa(again.status), again.status == 200)
		for _, conn := range held[1:] {
			conn.Close()
		}
	}

	// A Redis URL whose port cannot be one fails validation, naming the field.
	cfg := config.Config{Routes: []config.Route{{Service: "web", Backends: []string{"127.0.0.1:1"}}}, Consul: config.Consul{Disabled: true}}
	cfg.Redis.URL = "redis://127.0.0.1:99999/0"
	cfg.Cookie.Secrets = config.List{"0123456789abcdef0123456789abcdef"} // the port is the only fault
	_, err := cfg.Compile()
	hostileLine(t, "redis.url port 99999 (config)", "start-up error naming redis.url", fmt.Sprint(err),
		err != nil && strings.Contains(err.Error(), "redis.url: port \"99999\""))
}

// xFields is n fields "X: a", for get (which adds Host).
func xFields(n int) string { return strings.TrimSuffix(strings.Repeat("X: a\r\n", n), "\r\n") }

type hostileRow struct {
	name, gw, raw string
	status        int
	close         bool   // the connection must close after the answer
	reach         bool   // the request reaches the backend (else it must not)
	mayReach      bool   // the head may reach the backend before the body fails
	dropped, kept string // the backend must not see / must see this in the fields it got
}

func hostileLine(t *testing.T, input, want, got string, ok bool) {
	t.Helper()
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		t.Errorf("%s: want %s, got %s", input, want, got)
	}
	if len(input) > 48 {
		input = input[:45] + "..."
	}
	fmt.Printf("%s %-48s %-36s %s\n", mark, input, want, got)
}

// rawResult is what a client got for raw bytes.
type rawResult struct {
	status int
	body   string
	closed bool // the connection ended after the answer
	err    error
}

// sendRaw writes raw on a new connection (from its own goroutine: the
// server may answer and close before it has read it all), reads one
// response and then whether the connection closes (by a deadline that
// only a connection left open waits for).
func sendRaw(url, raw string) rawResult {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return rawResult{err: err}
	}
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, raw) }()
	return readAnswer(conn)
}

func readAnswer(conn net.Conn) rawResult {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawResult{err: err}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := rawResult{status: resp.StatusCode, body: string(body)}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = br.ReadByte()
	var ne net.Error
	r.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return r
}

// dialServed opens a connection, has one GET served on it and leaves it
// open.
func dialServed(t *testing.T, url string) (net.Conn, rawResult) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return conn, rawResult{err: err}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return conn, rawResult{status: resp.StatusCode}
}

// echoBackend counts requests and answers with the fields it got, one
// "Name: value" line each, sorted.
type echoBackend struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newEchoBackend(t *testing.T) *echoBackend {
	e := &echoBackend{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		var lines []string
		for k, vv := range r.Header {
			for _, v := range vv {
				lines = append(lines, k+": "+v)
			}
		}
		slices.Sort(lines)
		_, _ = io.WriteString(w, strings.Join(lines, "\n")+"\n")
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echoBackend) backend() discovery.Backend {
	return discovery.Backend{ID: "echo", Service: "web", Addr: strings.TrimPrefix(e.srv.URL, "http://"), Weight: 1, Health: discovery.Passing}
}
