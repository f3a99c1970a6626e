package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

func TestWebSocketPassesThrough(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Backend-Id: ws\r\n\r\n")
		buf.Flush()
		line, _ := buf.ReadString('\n')
		fmt.Fprintf(buf, "echo %s", line)
		buf.Flush()
	}))
	defer ws.Close()
	tb := &testBackend{id: "ws", srv: ws}
	tg := startGateway(t, nil, tb)
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "latch=") {
		t.Fatalf("status %d cookie %q; want 101 with the affinity cookie", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	fmt.Fprintf(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if line != "echo hello\n" {
		t.Fatalf("through the tunnel: %q; want echo hello", line)
	}
}

// Sticky "learn": affinity keyed on the application's own session cookie.
func TestLearnApplicationCookie(t *testing.T) {
	var backends []*testBackend
	for _, id := range []string{"a", "b", "c"} {
		b := &testBackend{id: id}
		b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend-Id", id)
			if _, err := r.Cookie("JSESSIONID"); err != nil {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: "sess-from-" + id})
			}
		}))
		t.Cleanup(b.srv.Close)
		backends = append(backends, b)
	}
	tg := startGateway(t, func(c *config.Config) {
		c.Defaults.Sticky.Learn = config.Set("JSESSIONID")
		c.Defaults.Policy = config.Set(config.List{"round_robin"})
	}, backends...)
	req, _ := http.NewRequest(http.MethodGet, tg.url+"/", nil)
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	first := resp.Header.Get("X-Backend-Id")
	var app string
	for _, c := range resp.Cookies() {
		if c.Name == "latch" {
			t.Fatal("learn mode issued latch's own cookie")
		}
		if c.Name == "JSESSIONID" {
			app = "JSESSIONID=" + c.Value
		}
	}
	if app == "" {
		t.Fatal("the application's cookie did not pass through")
	}
	for i := range 10 {
		if id, status, _ := tg.get(t, "/", app); id != first || status != 200 {
			t.Fatalf("request %d with the app's session: %s; want %s", i, id, first)
		}
	}
}

// latch's own active health check takes a failing backend out and brings
// it back.
func TestActiveHealthCheck(t *testing.T) {
	a := newBackend(t, "a")
	var sick atomic.Bool
	b := &testBackend{id: "b"}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Backend-Id", "b")
	}))
	t.Cleanup(b.srv.Close)
	tg := startGateway(t, func(c *config.Config) {
		c.Defaults.Policy = config.Set(config.List{"round_robin"})
		c.Defaults.HealthCheck = config.HealthCheck{Path: config.Set("/health"), Interval: config.Set(100 * time.Millisecond),
			Timeout: config.Set(50 * time.Millisecond), HealthyThreshold: config.Set(1), UnhealthyThreshold: config.Set(2)}
	}, a, b)
	sick.Store(true)
	waitUntil(t, "b taken out by the active check", func() bool {
		for range 4 {
			if id, _, _ := tg.get(t, "/", ""); id == "b" {
				return false
			}
		}
		return true
	})
	sick.Store(false)
	waitUntil(t, "b back in rotation", func() bool {
		id, _, _ := tg.get(t, "/", "")
		return id == "b"
	})
}

// Oversized headers get 431; a client that never finishes its headers is
// cut off after ReadHeaderTimeout (slowloris).
func TestHeaderLimits(t *testing.T) {
	a := newBackend(t, "a")
	tg := startGateway(t, func(c *config.Config) {
		c.Server.MaxHeaderBytes = config.Set(4096)
		c.Server.ReadHeaderTimeout = config.Set(200 * time.Millisecond)
	}, a)
	req, _ := http.NewRequest(http.MethodGet, tg.url+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 10_000))
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("10 kB header: status %d; want 431", resp.StatusCode)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the final CRLF
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil || time.Since(start) > 3*time.Second {
		t.Fatalf("slow client kept its connection (%v after %v); want it closed after ~200ms", err, time.Since(start))
	}
	if a.hits.Load() != 0 {
		t.Fatal("an incomplete request reached the backend")
	}
}
