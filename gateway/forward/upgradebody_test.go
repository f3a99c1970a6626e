package forward

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/h1"
)

// Issue 22: on the ReverseProxy path the Transport reads the request body
// on its own goroutine (persistConn.writeLoop), and may still be reading
// after the round trip returned: here the backend refuses an upgrade
// before reading the body the client is still sending. h1 reuses one body
// per connection, so that late reader raced the server's discard of the
// rest of the body, for its bytes and then the next request's: the torn
// state left a read of zero bytes that panicked in sockio, on the
// connection's goroutine, outside any recover (the process died). Now no
// read of the body outlives the handler: one in progress is cut short and
// the connection closes after the 403, or, none in progress, the server
// reads the rest of the body and serves the next request whole.
func TestProxyBodyNotReadAfterHandler(t *testing.T) {
	type seen struct{ path, body string }
	got := make(chan seen, 4)
	backend := loopbackBackend(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/up" {
				// Refuse at once, without reading the body; then record
				// what else the connection carries until latch closes it.
				_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
				rest, _ := io.ReadAll(br)
				got <- seen{"/up", string(rest)}
				return
			}
			body, _ := io.ReadAll(req.Body)
			got <- seen{req.URL.Path, string(body)}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c, br := proxyBodyRig(t, backend)
	// An upgrade with half of its body; the backend refuses it.
	write(t, c, "POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 10\r\n\r\nAAAAA")
	if resp := read(t, br); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("upgrade: status %d, want the backend's 403", resp.StatusCode)
	}
	// The rest of the body, then the next request on the connection.
	_, _ = io.WriteString(c, "BBBBB"+"POST /next HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nSECRET")
	resp, err := http.ReadResponse(br, nil)
	answered := err == nil
	switch {
	case answered && resp.StatusCode != http.StatusOK:
		t.Errorf("next request: status %d, want 200", resp.StatusCode)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("next request: %v, want an answer or the connection closed", err)
	}
	bodies := map[string]string{} // by path
	for _, ok := bodies["/up"]; !ok || answered && len(bodies) < 2; _, ok = bodies["/up"] {
		select {
		case s := <-got:
			bodies[s.path] = s.body
		case <-time.After(10 * time.Second):
			t.Fatalf("the backend saw %q; want the refused upgrade's connection to end and /next if answered", bodies)
		}
	}
	if up := bodies["/up"]; !strings.HasPrefix("AAAAABBBBB", up) {
		t.Errorf("the refused upgrade's backend connection carried %q, want no more than its own body", up)
	}
	if next, ok := bodies["/next"]; answered && next != "SECRET" || !answered && ok {
		t.Errorf("/next reached the backend with %q (%v), answered %v; want SECRET when answered", next, ok, answered)
	}
}

// A response cut mid-body (the backend died) while the Transport still
// reads the client's body: the client waits for the rest of the response
// before it sends more, so the handler cuts that read instead of waiting
// for it, and the connection closes.
func TestProxyBodyCutWithResponse(t *testing.T) {
	backend := loopbackBackend(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		}
	})
	c, br := proxyBodyRig(t, backend)
	write(t, c, "POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 10\r\n\r\nAAAAA")
	// The client reads what comes of the answer until latch closes the
	// connection; it does not send the rest of its body.
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("reading the cut answer: %v, want the connection closed", err)
	}
}

// proxyBodyRig serves forward on an h1 server (one body per connection,
// reused) to backend, and returns a client connection to it.
func proxyBodyRig(t *testing.T, backend string) (net.Conn, *bufio.Reader) {
	t.Helper()
	return h1Rig(t, newRig(t, false, config.Route{}, nil, backend))
}

// h1Rig serves r behind gateway/h1 on loopback and returns a client
// connection to it.
func h1Rig(t *testing.T, r *rig) (net.Conn, *bufio.Reader) {
	t.Helper()
	srv := &h1.Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if res := r.f.Serve(w, req, r.spec, rigSession{r}); res.Abort {
			panic(http.ErrAbortHandler)
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, br *bufio.Reader) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp
}
