package forward

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// The fast path's pool: most recent connection first, none kept past the
// idle timeout or the per-host bound, and a backend idle for a whole
// timeout is forgotten.
func TestUpstreamPool(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			defer c.Close()
		}
	}()
	cc, err := config.Config{Transport: config.Transport{MaxIdleConnsPerHost: config.Set(1)},
		Routes: []config.Route{{Service: "web"}}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	tc := cc.Config().Transport
	u := newPool(tc)
	clock := time.Unix(1_000_000, 0)
	u.now = func() time.Time { return clock }
	addr := ln.Addr().String()
	ctx := context.Background()
	conn := func() *upConn {
		t.Helper()
		c, err := u.conn(ctx, addr, false)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	a := conn()
	a.pool.put(a)
	if b := conn(); b != a || !b.reused {
		t.Fatal("a pooled connection was not reused")
	}
	b := conn() // a is out: a second connection is dialed
	a.pool.put(a)
	b.pool.put(b) // the pool holds 1: b is closed
	if c := conn(); c != a || u.idle.Load() != 0 {
		t.Fatalf("got another connection than the one kept, or %d idle left", u.idle.Load())
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("the connection over the per-host bound was not closed")
	}

	a.pool.put(a)
	clock = clock.Add(tc.IdleConnTimeout.Get() + time.Second)
	if c := conn(); c == a {
		t.Fatal("a connection idle past the timeout was reused")
	} else {
		c.close()
	}

	// A pool whose connections are all busy is not forgotten by the sweep.
	e := conn()
	clock = clock.Add(tc.IdleConnTimeout.Get() + time.Second)
	e.pool.expire()
	if _, ok := u.pools.Load(addr); !ok {
		t.Fatal("the sweep forgot a pool with a connection in use")
	}
	e.pool.put(e)
	if d := conn(); d != e {
		t.Fatal("the connection back from its request was not reused")
	} else {
		d.pool.put(d)
	}
	clock = clock.Add(tc.IdleConnTimeout.Get() + time.Second)
	e.pool.expire()
	if _, ok := u.pools.Load(addr); ok || u.idle.Load() != 0 {
		t.Fatalf("after a whole idle timeout: pool kept=%v, %d idle; want it forgotten, none", ok, u.idle.Load())
	}
	u.closeIdleConnections()
}

// send delivers a request head whole, small or many times the socket
// buffer (the rest then goes through the poller), and refuses a reused
// connection that holds bytes nobody asked for.
func TestSend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	heads := make(chan int, 4)
	unasked := make(chan net.Conn, 4)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					n := 0
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						n += len(line)
						if line == "\r\n" {
							break
						}
					}
					heads <- n
					if _, err := nc.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
						return
					}
					unasked <- nc
				}
			}()
		}
	}()
	cc, err := config.Config{Routes: []config.Route{{Service: "web"}}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	u := newPool(cc.Config().Transport)
	ctx := context.Background()
	c, err := u.conn(ctx, ln.Addr().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !c.canSend() {
		t.Skip("no raw socket calls on this platform")
	}
	exchange := func(c *upConn, head string) (backend net.Conn) {
		t.Helper()
		c.out = append(c.out[:0], head...)
		if err := c.send(); err != nil {
			t.Fatalf("send: %v", err)
		}
		if n := <-heads; n != len(head) {
			t.Fatalf("the backend read a head of %d bytes; sent %d", n, len(head))
		}
		if code, err := c.readHead("GET"); err != nil || code != 200 {
			t.Fatalf("readHead = %d, %v", code, err)
		}
		if keep, err := c.copyBody(ctx, discard{}); err != nil || !keep {
			t.Fatalf("copyBody = %v, %v", keep, err)
		}
		return <-unasked
	}
	exchange(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")

	// A head much larger than the socket's send buffer.
	_ = c.Conn.(*net.TCPConn).SetWriteBuffer(4096)
	big := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n"
	exchange(c, big)

	// Pooled, then sent bytes nobody asked for: the next send refuses it.
	c.pool.put(c)
	if c = c.pool.get(u.now()); c == nil {
		t.Fatal("the connection was not pooled")
	}
	nc := exchange(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") // clean: reused
	c.pool.put(c)
	if _, err := nc.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c = c.pool.get(u.now())
	for deadline := time.Now().Add(5 * time.Second); c.idleClean(); {
		if time.Now().After(deadline) {
			t.Fatal("the unasked bytes never reached the connection")
		}
		time.Sleep(time.Millisecond)
	}
	c.out = append(c.out[:0], "GET / HTTP/1.1\r\nHost: a\r\n\r\n"...)
	if err := c.send(); !errors.Is(err, errIdleDirty) {
		t.Fatalf("send on a connection holding unasked bytes = %v; want errIdleDirty", err)
	}
	c.close()
}

type discard struct{ http.ResponseWriter }

func (discard) Write(p []byte) (int, error) { return len(p), nil }
