package forward

import (
	"github.com/latchgw/latch/gateway/config"

	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
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
