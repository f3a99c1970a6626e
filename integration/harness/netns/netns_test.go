package netns

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPushBackHarness runs the push-back peers against each other, client
// on one host and Echo on another, with nothing in between: what the
// harness reports as received and answered must hold on every pace before
// a proxy is put between them.
func TestPushBackHarness(t *testing.T) {
	hosts := StartHosts(t, 2)
	srv, limited := hosts.Hosts[0], hosts.Hosts[1]
	var cli *Host // the root namespace: hosts reach each other only through it
	hosts.Limit(t, limited, "200mbit")
	slow := EchoOptions{Sock: SockOpts{RcvBuf: 4096}, Read: Pace{Chunk: 1024, Pause: time.Millisecond, Budget: 256 << 10}}
	dribble := EchoOptions{Write: Pace{Chunk: 1, Budget: 8 << 10, Stalls: []int64{10}, StallFor: 50 * time.Millisecond}, StallBody: 50 * time.Millisecond}
	backends := map[string]*Echo{
		"at once":      StartEcho(t, srv, "fast", EchoOptions{}),
		"slow reader":  StartEcho(t, srv, "slow", slow),
		"dribbler":     StartEcho(t, srv, "dribble", dribble),
		"limited link": StartEcho(t, limited, "limited", EchoOptions{}),
	}
	body := Pattern(1, 1<<20)
	for name, e := range backends {
		c := &Client{Host: cli, Addr: e.Addr}
		t.Run(name, func(t *testing.T) {
			xs := []*Exchange{
				{Method: "GET", Path: "/", Host: "x", Header: [][2]string{PadField(60 << 10), {"X-Test-Id", "a"}}, Size: 1 << 20, HPad: 30 << 10},
				{Method: "POST", Path: "/up", Host: "x", Body: body, Chunked: true, Size: 1, RespChunked: true},
				{Method: "POST", Path: "/up", Host: "x", Body: body[:70000], Size: 0},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Do(ctx, xs...); err != nil {
				t.Fatalf("pipelined: %v", err)
			}
			if err := c.Do(ctx, &Exchange{Method: "PUT", Path: "/e", Host: "x", Body: body, Expect100: true, Size: 10}); err != nil {
				t.Fatalf("100-continue: %v", err)
			}
			if err := c.Upgrade(ctx, &Exchange{Method: "GET", Path: "/ws", Host: "x", Header: [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}}}, body); err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if n := e.Seen("a"); n != 1 {
				t.Fatalf("request a seen %d times, want 1", n)
			}
		})
	}
	// The checks can fail: a body cut short by one byte is caught.
	c := &Client{Host: cli, Addr: backends["at once"].Addr}
	x := &Exchange{Method: "POST", Path: "/", Host: "x", Body: body[:100], Size: 5}
	pc, err := c.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	head := strings.Replace(string(x.head()), "Content-Length: 100", "Content-Length: 99", 1)
	if _, err := pc.Write(append([]byte(head), body[:99]...)); err != nil {
		t.Fatal(err)
	}
	resp, err := readResponse(pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.check(resp); err == nil || !strings.Contains(err.Error(), "other bytes") {
		t.Fatalf("a body short by a byte: check = %v, want the backend's bytes to differ", err)
	}
}
