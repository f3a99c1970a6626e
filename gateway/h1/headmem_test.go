package h1

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 23: every connection sending a maximum-size head held its grown
// read buffer (and more), bounded only by max_connections. MaxHeadMemory
// bounds what all of them hold: a head that would take more is answered
// 503 and closed, and what a connection took is given back when its
// buffer goes.
func TestMaxHeadMemory(t *testing.T) {
	srv := &Server{MaxHeadMemory: 100 << 10, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	addr := start(t, srv)
	connect := func() (net.Conn, *bufio.Reader) {
		c := dial(t, addr, 10*time.Second)
		return c, bufio.NewReader(c)
	}
	big := "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 60<<10) + "\r\n\r\n"
	status := func(c net.Conn, br *bufio.Reader, rest string) int {
		t.Helper()
		if _, err := io.WriteString(c, rest); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (head memory %d)", what, srv.headMem.Load())
			}
		}
	}

	// A holds most of a big head; its buffer grew to 64 KiB.
	a, abr := connect()
	if _, err := io.WriteString(a, big[:len(big)-10]); err != nil {
		t.Fatal(err)
	}
	waitFor("a's buffer to grow", func() bool { return srv.headMem.Load() >= 60<<10 })
	// B's head would need as much again: over the bound.
	b, bbr := connect()
	if s := status(b, bbr, big); s != http.StatusServiceUnavailable {
		t.Fatalf("a second big head while the first holds the memory: %d; want 503", s)
	}
	// Small heads need no growth: served.
	c, cbr := connect()
	if s := status(c, cbr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); s != 200 {
		t.Fatalf("a small head: %d; want 200", s)
	}
	// A finishes and is answered; its memory comes back; a big head is
	// served again.
	if s := status(a, abr, big[len(big)-10:]); s != 200 {
		t.Fatalf("the first big head: %d; want 200", s)
	}
	waitFor("a's buffer returned", func() bool { return srv.headMem.Load() == 0 })
	d, dbr := connect()
	if s := status(d, dbr, big); s != 200 {
		t.Fatalf("a big head once the memory is back: %d; want 200", s)
	}
	a.Close()
	d.Close()
	waitFor("every reservation returned", func() bool { return srv.headMem.Load() == 0 })
}

// Issue 23, heads held once: once a big head is read, its grown buffer is
// given up (the head lives on as the request's one string), while its
// reservation stays until the request ends, and the next head on the
// connection, read into a small buffer again, reserves only beyond it.
func TestBigHeadBufferGivenUp(t *testing.T) {
	const limit = 64 << 10
	type seen struct{ buf, reserved int }
	seenc := make(chan seen, 2)
	srv := &Server{MaxHeaderBytes: limit, MaxHeadMemory: 1 << 20, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The handler runs on its connection's goroutine: its buffer can
		// be read here.
		srv.mu.Lock()
		var n int
		for c := range srv.conns {
			n = len(c.buf)
		}
		srv.mu.Unlock()
		seenc <- seen{n, int(srv.headMem.Load())}
		_, _ = io.WriteString(w, "ok")
	})
	c := dial(t, start(t, srv), 10*time.Second)
	br := bufio.NewReader(c)
	big := "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 60<<10) + "\r\n\r\n"
	answer := func() {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d; want 200", resp.StatusCode)
		}
	}
	// The first head, and the start of the second read with it.
	if _, err := io.WriteString(c, big+big[:100]); err != nil {
		t.Fatal(err)
	}
	first := <-seenc
	answer()
	if _, err := io.WriteString(c, big[100:]); err != nil {
		t.Fatal(err)
	}
	second := <-seenc
	answer()
	for i, s := range []seen{first, second} {
		if s.buf != bufSize {
			t.Errorf("head %d: the handler runs with a read buffer of %d bytes; want the pooled %d (the grown one given up)", i+1, s.buf, bufSize)
		}
		if s.reserved < 60<<10 || s.reserved > limit {
			t.Errorf("head %d: %d bytes of head memory reserved while its request runs; want the head's (%d..%d)", i+1, s.reserved, 60<<10, limit)
		}
	}
}
