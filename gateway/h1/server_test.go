package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves h on a loopback port until the test ends.
func start(t testing.TB, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, srv, l)
}

// startOn serves h on l until the test ends.
func startOn(t testing.TB, srv *Server, l net.Listener) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// echo answers with what it saw of the request.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-URI", r.RequestURI)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
	w.Header().Set("X-Foo", strings.Join(r.Header.Values("Foo"), "|"))
	fmt.Fprintf(w, "body=%s", body)
}

func TestChiThroughClient(t *testing.T) {
	mux := chi.NewRouter()
	mux.Get("/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s q=%s", chi.URLParam(r, "id"), r.URL.Query().Get("q"))
	})
	mux.Post("/echo", echo)
	addr := start(t, &Server{Handler: mux})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range 3 { // one keep-alive connection, three requests
		resp, err := client.Get(fmt.Sprintf("http://%s/users/%d?q=x%d", addr, i, i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("user %d q=x%d", i, i); string(body) != want || resp.ContentLength != int64(len(want)) {
			t.Fatalf("got %q (length %d), want %q with its length", body, resp.ContentLength, want)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("headers %v: want Date and a sniffed Content-Type", resp.Header)
		}
	}
	resp, err := client.Post("http://"+addr+"/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body=hello" || resp.Header.Get("X-Length") != "5" {
		t.Fatalf("POST: %q %v", body, resp.Header)
	}
}

// roundTrip writes raw bytes on a new connection and returns everything
// the server sent until it closed (or a second passed).
// dial connects to addr; every read and write on the connection fails
// after d. The test's end closes it.
func dial(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	return c
}

func roundTrip(t *testing.T, addr, raw string) string {
	t.Helper()
	c := dial(t, addr, time.Second)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestPipelinedAndFraming(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(echo)})
	out := roundTrip(t, addr, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"+
		"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nxyz\r\n2\r\n12\r\n0\r\nT: v\r\n\r\n"+
		"GET /c HTTP/1.1\r\nHost: h\r\nFoo: 1\r\nfoo: 2\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(strings.NewReader(out))
	for _, want := range []struct{ uri, body, length, foo string }{
		{"/a", "body=abc", "3", ""}, {"/b", "body=xyz12", "-1", ""}, {"/c", "body=", "0", "1|2"},
	} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer to %s: %v\n%s", want.uri, err, out)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("X-URI") != want.uri || string(body) != want.body ||
			resp.Header.Get("X-Length") != want.length || resp.Header.Get("X-Foo") != want.foo {
			t.Errorf("%s: %s %v %q", want.uri, resp.Status, resp.Header, body)
		}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("bytes after the last answer: %q", rest)
	}
}

func TestRejects(t *testing.T) {
	var handled atomic.Int32
	srv := &Server{MaxHeaderBytes: 4096, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) })}
	addr := start(t, srv)
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
		{"bare LF in a field", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: h\r\nXy\r\n\r\n", 400},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"two equal lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\na", 400},
		{"signed length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na", 400},
		{"chunked and length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"chunked, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
		{"xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
		{"empty coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n", 400},
		{"leading comma", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n", 400},
		{"trailing comma", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", 400},
		{"coding parameter", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400},
		{"identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400},
		{"Chunked and length", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"coding folded", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n , identity\r\n\r\n", 400},
		{"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400},
		{"overlong UTF-8 target", "GET /\xc0\xaf HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"method too long", strings.Repeat("G", 5000) + " / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"target too long", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: h\r\n\r\n", 414},
		{"HTTP/1.0 chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"HTTP/2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"bad version", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"non-ASCII target", "GET /\xc3\xa4 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"ftp absolute-form", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"Expect other", "GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417},
		{"Expect other after 100-continue", "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue, magic\r\n\r\n", 417},
		{"Expect other on a later line", "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue\r\nExpect: magic\r\n\r\n", 417},
		{"Expect with a parameter", "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue;x=1\r\n\r\n", 417},
		{"Expect of bare commas", "GET / HTTP/1.1\r\nHost: h\r\nExpect: ,\r\n\r\n", 417},
		{"head too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := roundTrip(t, addr, tc.raw)
			if want := fmt.Sprintf("HTTP/1.1 %d ", tc.status); !strings.HasPrefix(out, want) || !strings.Contains(out, "Connection: close") {
				t.Errorf("got %q, want %q and a close", out, want)
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the handler ran %d times for rejected requests", n)
	}
}

func TestChunkedBodyErrors(t *testing.T) {
	errs := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		errs <- err
	})})
	for name, body := range map[string]string{
		"bare LF after size":    "3\nabc\r\n0\r\n\r\n",
		"data longer than size": "3\r\nabcd\r\n0\r\n\r\n",
		"not hex":               "x\r\nabc\r\n0\r\n\r\n",
		"17 digits":             "00000000000000003\r\nabc\r\n0\r\n\r\n",
		"control in extension":  "3;a\x01\r\nabc\r\n0\r\n\r\n",
		"bad trailer":           "3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
		"space inside size":     "3 ;x\r\nabc\r\n0\r\n\r\n",
		"bare semicolon":        "3;\r\nabc\r\n0\r\n\r\n",
		"underscore in size":    "1_0\r\nabc\r\n0\r\n\r\n",
		"0x prefix":             "0x3\r\nabc\r\n0\r\n\r\n",
		"leading space":         " 3\r\nabc\r\n0\r\n\r\n",
		"negative size":         "-3\r\nabc\r\n0\r\n\r\n",
		"overflowing size":      "ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"missing CRLF":          "3\r\nabc0\r\n\r\n",
		"bare CR in extension":  "3;a=b\rc\r\nabc\r\n0\r\n\r\n",
		"bad extension value":   "3;a=b c\r\nabc\r\n0\r\n\r\n",
		"64 KiB extension":      "3;a=" + strings.Repeat("b", 64<<10) + "\r\nabc\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			out := roundTrip(t, addr, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
			var pe *ParseError
			if err := <-errs; !errors.As(err, &pe) || pe.Kind != KindChunk && pe.Kind != KindChunkExt {
				t.Errorf("body error %v, want a chunk error", err)
			}
			// The handler answered 200; the client is told its body was
			// malformed, once, and the connection closes.
			if !strings.HasPrefix(out, "HTTP/1.1 400 ") || strings.Count(out, "HTTP/1.1") != 1 || !strings.Contains(out, "Connection: close") {
				t.Errorf("answer %q: want one 400, then the close", out)
			}
		})
	}
}
