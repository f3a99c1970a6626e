package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// Two listeners share a port (server.reuse_port). Connections queued in
// the first one's accept queue when it drains are accepted, not reset,
// and once it is closed every new connection reaches the second.
func TestReusePortDrain(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the drain filter is Linux's")
	}
	first, err := Listen(context.Background(), "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Listen(context.Background(), first.Addr().String(), true)
	if err != nil {
		t.Fatalf("second listener on the same address: %v", err)
	}
	defer second.Close()
	accepted := func(l net.Listener, n *atomic.Int64, done chan<- struct{}) {
		for {
			c, err := l.Accept()
			if err != nil {
				close(done)
				return
			}
			n.Add(1)
			c.Close()
		}
	}
	// Connections land in both queues while nobody accepts.
	var conns []net.Conn
	for range 40 {
		c, err := net.Dial("tcp", first.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		defer c.Close()
	}
	rc, _ := first.(*reusePortListener).Listener.(*net.TCPListener).SyscallConn()
	var queued int
	_ = rc.Control(func(fd uintptr) { queued, _ = acceptQueue(fd) })
	if queued == 0 || queued == len(conns) {
		t.Fatalf("%d of %d connections queued in the first listener; want some in each", queued, len(conns))
	}
	var nFirst, nSecond atomic.Int64
	firstDone, secondDone := make(chan struct{}), make(chan struct{})
	go accepted(first, &nFirst, firstDone)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.(*reusePortListener).drain(ctx); err != nil {
		t.Fatal(err)
	}
	first.Close()
	<-firstDone
	if n := nFirst.Load(); n != int64(queued) {
		t.Fatalf("the first listener accepted %d of its %d queued connections before closing", n, queued)
	}
	go accepted(second, &nSecond, secondDone)
	for range 20 {
		c, err := net.DialTimeout("tcp", first.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatalf("a connection after the first listener closed: %v", err)
		}
		c.Close()
	}
	want := int64(len(conns) - queued + 20)
	deadline := time.Now().Add(5 * time.Second)
	for nSecond.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	second.Close()
	<-secondDone
	if n := nSecond.Load(); n != want {
		t.Fatalf("the second listener accepted %d; want %d", n, want)
	}
}

// A shared listener accepts only once the gateway is ready: a request sent
// to a replacement latch before discovery answered waits and is served,
// instead of answered 503.
func TestSharedListenerWaitsForReady(t *testing.T) {
	backend := newBackend(t, "a")
	cfg := config.Config{Routes: []config.Route{{Service: "web", Backends: config.List{"127.0.0.1:1"}}},
		Consul: config.Consul{Disabled: true}}
	cfg.Log.Access = config.Set(false)
	cfg.Server.Implementation = os.Getenv("LATCH_TEST_SERVER")
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	src := gatedSource{Static: discovery.NewStatic(map[string][]discovery.Backend{"web": {backend.backend()}}), open: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	affinity := session.NewAffinity(session.Options{Store: session.NewMemoryStore(100, nil), Codec: testCodec(t), Logger: log})
	g, err := New(cc, Deps{Logger: log, Source: src, Affinity: affinity})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := Listen(context.Background(), "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.RunOn(ctx, Listeners{Public: pub}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c, err := net.Dial("tcp", pub.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if g.Ready() {
		t.Fatal("ready before discovery answered")
	}
	close(src.open)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend-Id") != "a" {
		t.Fatalf("request sent before ready: %d from %q; want 200 from a", resp.StatusCode, resp.Header.Get("X-Backend-Id"))
	}
}
