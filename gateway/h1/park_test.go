//go:build linux

package h1

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// keepAlive sends one request on c and reads the answer whole.
func keepAlive(t testing.TB, c net.Conn, br *bufio.Reader, path string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatalf("%s: the server closed the connection", path)
	}
	return string(body)
}

// An idle keep-alive connection holds no goroutine (issue 25): after its
// request it waits in the server's watcher, and its next request, whole
// or a byte at a time, is served as the first was. With the default
// park delay (a second), as a user runs it.
func TestIdleConnectionHoldsNoGoroutine(t *testing.T) {
	const n = 20
	addr := start(t, &Server{Handler: http.HandlerFunc(echo), IdleTimeout: time.Minute})
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	var cs []client
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, client{c, bufio.NewReader(c)})
		if got, want := keepAlive(t, c, cs[i].br, fmt.Sprint("/first/", i)), "body="; got != want {
			t.Fatalf("first answer %q", got)
		}
	}
	waitFor(t, "idle connections still have their goroutines", func() bool { return connGoroutines() == 0 })
	for i, cl := range cs {
		if i%2 == 0 {
			keepAlive(t, cl.c, cl.br, "/second")
			continue
		}
		// A byte at a time: the first wakes the connection, the rest
		// arrive while it reads the head.
		req := "GET /second HTTP/1.1\r\nHost: h\r\n\r\n"
		for j := range len(req) {
			if _, err := cl.c.Write([]byte{req[j]}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		resp, err := http.ReadResponse(cl.br, nil)
		if err != nil {
			t.Fatalf("byte at a time: %v", err)
		}
		if resp.Header.Get("X-URI") != "/second" {
			t.Fatalf("byte at a time: served %q", resp.Header.Get("X-URI"))
		}
		io.Copy(io.Discard, resp.Body)
	}
	waitFor(t, "connections did not park again", func() bool { return connGoroutines() == 0 })
}

// parked starts a server that parks idle connections at once (or after
// delay), counting its connections' states.
func parked(t *testing.T, delay time.Duration, idle time.Duration) (*Server, string, *atomic.Int64, *atomic.Int64) {
	var opened, closed atomic.Int64
	srv := &Server{Handler: http.HandlerFunc(echo), IdleTimeout: idle, parkDelay: delay,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
			}
		}}
	return srv, start(t, srv), &opened, &closed
}

var parkDelays = []struct {
	name  string
	delay time.Duration
}{{"at once", -1}, {"after 50ms", 50 * time.Millisecond}}

// A parked connection's idle timeout is kept by the watcher's sweep; one
// whose client hangs up is closed; StateNew and StateClosed balance.
func TestParkedTimeoutAndHangUp(t *testing.T) {
	for _, tc := range parkDelays {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, opened, closed := parked(t, tc.delay, time.Second)
			timedOut, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer timedOut.Close()
			hangUp, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			keepAlive(t, timedOut, bufio.NewReader(timedOut), "/")
			keepAlive(t, hangUp, bufio.NewReader(hangUp), "/")
			waitFor(t, "connections did not park", func() bool { return connGoroutines() == 0 })
			hangUp.Close()
			waitFor(t, "the hung-up connection is not closed", func() bool { return closed.Load() >= 1 })
			_ = timedOut.SetReadDeadline(time.Now().Add(8 * time.Second))
			if n, err := timedOut.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("idle connection: read %d, %v: want it closed by the idle timeout", n, err)
			}
			if d := time.Since(begin); d < 900*time.Millisecond || d > 6*time.Second { // a loaded -race run: seconds late
				t.Errorf("closed %v after its request; idle timeout 1s (swept a second at a time)", d)
			}
			waitFor(t, "closes not counted", func() bool { return closed.Load() == 2 })
			if opened.Load() != 2 {
				t.Errorf("StateNew %d times, want 2", opened.Load())
			}
		})
	}
}

// Shutdown and Close close parked connections (which have no goroutine to
// notice) and report them closed.
func TestShutdownClosesParked(t *testing.T) {
	for _, how := range []string{"Shutdown", "Close"} {
		for _, tc := range parkDelays {
			t.Run(how+"/"+tc.name, func(t *testing.T) {
				srv, addr, opened, closed := parked(t, tc.delay, time.Minute)
				var cs []net.Conn
				for range 5 {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					keepAlive(t, c, bufio.NewReader(c), "/")
					cs = append(cs, c)
				}
				waitFor(t, "connections did not park", func() bool { return connGoroutines() == 0 })
				if how == "Close" {
					srv.Close()
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := srv.Shutdown(ctx); err != nil {
						t.Fatalf("Shutdown: %v", err)
					}
				}
				for i, c := range cs {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Read(make([]byte, 1)); err != io.EOF {
						t.Fatalf("connection %d: %v, want closed", i, err)
					}
				}
				waitFor(t, "closes not counted", func() bool { return closed.Load() == 5 })
				if opened.Load() != 5 {
					t.Errorf("StateNew %d times, want 5", opened.Load())
				}
			})
		}
	}
}

// A parked connection whose client hangs up with nothing unread is closed
// by the watcher itself, no goroutine started to read the EOF (10,000 of
// them at a mass close left their stacks and descriptors behind); one
// whose client sent a request before shutting its side still gets it
// served.
func TestParkedHangUpWithoutGoroutine(t *testing.T) {
	parkedHangUp(t, func(srv *Server) string { return start(t, srv) },
		func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) })
}

// parkedHangUp is TestParkedHangUpWithoutGoroutine's case on a server
// started by serve (which returns its address) and clients dialed by dial.
func parkedHangUp(t *testing.T, serve func(*Server) string, dial func(addr string) (net.Conn, error)) {
	const n = 20
	var idles, closed atomic.Int64
	addr := serve(&Server{Handler: http.HandlerFunc(echo), IdleTimeout: time.Minute, parkDelay: -1,
		testHookIdle: func(*conn) { idles.Add(1) },
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				closed.Add(1)
			}
		}})
	conns := openParked(t, addr, n, dial)
	before := idles.Load()
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "hung-up connections not closed", func() bool { return closed.Load() == n })
	if got := idles.Load() - before; got != 0 {
		t.Errorf("%d hung-up parked connections were resumed to wait again; want none resumed", got)
	}

	c, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	keepAlive(t, c, br, "/")
	waitFor(t, "connection did not park", func() bool { return connGoroutines() == 0 })
	if _, err := io.WriteString(c, "GET /last HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request sent before the hang-up: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request sent before the hang-up: %s", resp.Status)
	}
}

// openParked opens n connections to addr, one request on each, and waits
// until they have all parked (the server parks at once).
func openParked(t *testing.T, addr string, n int, dial func(addr string) (net.Conn, error)) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
		keepAlive(t, c, bufio.NewReader(c), "/")
	}
	waitFor(t, "connections did not park", func() bool { return connGoroutines() == 0 })
	return conns
}
