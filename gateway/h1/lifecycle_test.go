package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An Expect that lists 100-continue gets a 100 Continue before the body is
// read, however the list is spelt: Expect is one list over all its lines
// (RFC 9110 §10.1.1, §5.6.1), as forward reads it (issue 24: h1 read the
// first line only, forward each line whole, and they disagreed).
func TestExpectContinue(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(echo)})
	for name, expect := range map[string]string{
		"plain":               "Expect: 100-continue\r\n",
		"case and list":       "Expect: 100-Continue, \r\n",
		"member on line two":  "Expect: \r\nExpect: 100-continue\r\n",
		"repeated as a list":  "Expect: 100-continue,100-continue\r\n",
		"repeated as a field": "Expect: 100-continue\r\nExpect: 100-continue\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr, 5*time.Second)
			fmt.Fprint(c, "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"+expect+"\r\n")
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
				t.Fatalf("first line %q, %v: want 100 Continue before the body is sent", line, err)
			}
			if blank, _ := br.ReadString('\n'); blank != "\r\n" {
				t.Fatalf("after 100 Continue: %q", blank)
			}
			fmt.Fprint(c, "data")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "body=data" {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestExpectContinueUnreadCloses(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	})})
	out := roundTrip(t, addr, "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 403 ") || strings.Contains(out, "100 Continue") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("got %q: want a 403 with a close and no 100 Continue", out)
	}
}

func TestHTTP10(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
		}
		w.Write([]byte("b"))
	})})
	// Keep-alive asked, length known: kept; the second request closes.
	out := roundTrip(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
	if strings.Count(out, "HTTP/1.0 200") != 2 || !strings.Contains(out, "Connection: keep-alive") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("got %q", out)
	}
	// Length unknown: no chunking for HTTP/1.0, the close ends the body.
	out = roundTrip(t, addr, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if strings.Contains(out, "chunked") || !strings.HasSuffix(out, "\r\n\r\nab") {
		t.Fatalf("got %q", out)
	}
}

func TestStreamingTrailersAndHead(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("part1,"))
		w.(http.Flusher).Flush()
		w.Write([]byte(strings.Repeat("z", 10000)))
		w.Header().Set("X-Sum", "42")
	})})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || len(body) != 10006 || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("coding %v, %d bytes, trailer %v", resp.TransferEncoding, len(body), resp.Trailer)
	}
	resp, err = http.Head("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}

func TestHijack(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n') // read ahead with the head: handed over
		fmt.Fprint(c, "echo:"+line)
	})})
	out := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nping\n")
	if !strings.HasPrefix(out, "HTTP/1.1 101 ") || !strings.HasSuffix(out, "echo:ping\n") {
		t.Fatalf("got %q", out)
	}
}

func TestTimeouts(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout: 300 * time.Millisecond})
	for name, raw := range map[string]string{
		"slow head":            "GET / HTTP/1.1\r\nHost: h\r\n", // never finished
		"idle after a request": "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"silent":               "",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr, 5*time.Second)
			io.WriteString(c, raw)
			begin := time.Now()
			out, err := io.ReadAll(c) // until the server closes
			if err != nil {
				t.Fatalf("the server did not close within 5s: %v", err)
			}
			if d := time.Since(begin); d < 150*time.Millisecond {
				t.Errorf("closed after %v, before the timeout", d)
			}
			if raw == "" && len(out) != 0 {
				t.Errorf("answer to a silent client: %q", out)
			}
		})
	}
}

func TestWriteTimeout(t *testing.T) {
	wrote := make(chan error, 1)
	addr := start(t, &Server{WriteTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				wrote <- err
				return
			}
		}
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n") // and never read the answer
	select {
	case err := <-wrote:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("write error %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write never timed out")
	}
}

func TestShutdownWaitsForInFlightAndClosesIdle(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	addr := l.Addr().String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idleBR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleBR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle connection's request: %v", err)
	} else {
		io.ReadAll(resp.Body)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want it closed by Shutdown", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("in-flight request cut: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("in-flight answer %q close=%v: want it whole, with Connection: close", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { close(entered); <-release })}
	addr := start(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	close(release)
}

// An idle connection holds no buffer: they go back to the pool between
// requests (the point of the package).
func TestIdleConnectionHoldsNoBuffer(t *testing.T) {
	held := make(chan string, 10)
	srv := &Server{Handler: http.HandlerFunc(echo)}
	srv.testHookIdle = func(c *conn) {
		held <- fmt.Sprintf("buf=%d out=%d header=%d", cap(c.buf), cap(c.resp.out), len(c.hdr))
	}
	addr := start(t, srv)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-held; got != "buf=0 out=0 header=0" {
		t.Fatalf("new connection: %s", got)
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	if got := <-held; got != "buf=0 out=0 header=0" {
		t.Fatalf("idle after a request: %s", got)
	}
}

// A client that hangs up mid-request cancels the request's context (so a
// proxy drops its backend request), without a goroutine per request.
// The watch is registered once per connection: a client that leaves
// during its third request cancels that one's context as it would the
// first's.
func TestClientGoneCancelsContext(t *testing.T) {
	entered, canceled := make(chan struct{}), make(chan struct{})
	n := 0
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n++; n < 3 {
			io.WriteString(w, "ok")
			return
		}
		close(entered)
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(5 * time.Second):
		}
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	c.Close()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the request's context outlived its client")
	}
}

func TestHandlerMistakes(t *testing.T) {
	addr := start(t, &Server{Log: discardLog(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/short": // promises 10 bytes, writes 2: the close must tell the client
			w.Header().Set("Content-Length", "10")
			w.Write([]byte("ab"))
		case "/long":
			w.Header().Set("Content-Length", "1")
			if _, err := w.Write([]byte("ab")); err != http.ErrContentLength {
				t.Errorf("writing past Content-Length: %v", err)
			}
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte("ok"))
		case "/nobody":
			w.WriteHeader(http.StatusNoContent)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("writing a 204 body: %v", err)
			}
		}
	})})
	if out := roundTrip(t, addr, "GET /panic HTTP/1.1\r\nHost: h\r\n\r\n"); out != "" {
		t.Errorf("panic: %q, want the connection closed without an answer", out)
	}
	if out := roundTrip(t, addr, "GET /short HTTP/1.1\r\nHost: h\r\n\r\nGET /short HTTP/1.1\r\nHost: h\r\n\r\n"); strings.Count(out, "HTTP/1.1 200") != 1 || !strings.HasSuffix(out, "ab") {
		t.Errorf("short body: %q, want one answer cut by the close", out)
	}
	if out := roundTrip(t, addr, "GET /long HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(out, "\r\n\r\n") {
		t.Errorf("long body: %q, want the head alone", out)
	}
	out := roundTrip(t, addr, "GET /hints HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "ok") {
		t.Errorf("early hints: %q", out)
	}
	out = roundTrip(t, addr, "GET /nobody HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 204 ") || strings.Contains(out, "Content-Length") || strings.Contains(out, "chunked") {
		t.Errorf("204: %q", out)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
