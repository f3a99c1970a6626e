package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/integration/harness/netns"
)

// TestFaultSuitePushBack is the push-back row of the fault suite: sticky
// traffic through two latch replicas to three backends over veth, one of
// which reads slowly through a small receive window, with heads and
// bodies of every size (a byte of field to 60 KiB, bodies from 0 to 16
// MiB, by Content-Length and chunked). Each replica is a latch process on
// a host whose TCP buffers are small and fixed (no autotuning), so its
// writes of a big head come back short however warm the connection is;
// the backends and the clients are on the bridge, in the test's
// namespace. Nothing is faulted but the network's pace, so nothing may
// fail, no request may reach a backend twice, no session may move and no
// breaker may change state.
func TestFaultSuitePushBack(t *testing.T) {
	harness.NeedNetns(t)
	t.Cleanup(func() { printFaultTable(t) })
	hosts := harness.StartHosts(t, 2)
	consul := harness.StartConsulAlso(t, hosts.Gateway)
	consulAt := net.JoinHostPort(hosts.Gateway, portOf(t, consul.HTTPAddr))
	redis := harness.StartRedisWith(t, "--bind", "127.0.0.1", hosts.Gateway)
	redisAt := net.JoinHostPort(hosts.Gateway, portOf(t, redis.Addr))
	echoes := []*netns.Echo{
		netns.StartEchoAt(t, nil, hosts.AddAddr(t), "web-1", netns.EchoOptions{}),
		netns.StartEchoAt(t, nil, hosts.AddAddr(t), "web-2", netns.EchoOptions{}),
		netns.StartEchoAt(t, nil, hosts.AddAddr(t), "web-slow", netns.EchoOptions{Sock: netns.SockOpts{RcvBuf: 4096},
			Read: netns.Pace{Chunk: 1024, Pause: time.Millisecond, Budget: 256 << 10}}),
	}
	for _, e := range echoes {
		consul.Register(t, e.ID, "web", e.Addr)
	}
	var replicas []*harness.LatchProcess
	var urls []string
	names := map[string]string{}
	port := strconv.Itoa(harness.FreePort(t))
	for i, h := range hosts.Hosts {
		h.Buffers(t, 16<<10, 16<<10)
		cfg := harness.LatchConfig(consulAt, "redis://"+redisAt+"/0", "web")
		cfg.Listen = net.JoinHostPort(h.IP, port)
		cfg.Admin.Listen = net.JoinHostPort(h.IP, strconv.Itoa(harness.FreePort(t)))
		cfg.Defaults.Sticky.Domain = config.Set("latch.test")
		// A head that never reaches its backend ends in 5 s, not a minute.
		cfg.Transport.ResponseHeaderTimeout = config.Set(5 * time.Second)
		// New sessions in turn: the slow backend gets its share for sure.
		cfg.Defaults.Policy = config.Set(config.List{"round_robin"})
		rep := harness.StartLatchProcess(t, h, cfg)
		waitPassing(t, rep.Admin, "web", len(echoes))
		name := fmt.Sprintf("r%d.latch.test", i+1)
		names[name] = h.IP
		replicas, urls = append(replicas, rep), append(urls, "http://"+name+":"+port+"/")
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && names[host] != "" {
			addr = net.JoinHostPort(names[host], port)
		}
		return dialer.DialContext(ctx, network, addr)
	}

	const sessions, perSession = 6, 28
	start := time.Now()
	results := make([]pushBackSession, sessions)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = pushBackRun(dial, urls, i, perSession) })
	}
	wg.Wait()
	took := time.Since(start)

	row := faultRow{name: "push-back: 2 replicas, 3 backends over veth, one reads slowly; heads to 60 KiB, bodies to 16 MiB", sent: sessions * perSession}
	on := map[string]int{}
	for i, s := range results {
		row.failed += len(s.errs)
		for _, e := range s.errs {
			t.Errorf("session %d: %s", i, e)
		}
		if len(s.backends) > 1 {
			row.moved++
			row.needless++
			t.Errorf("session %d moved between %v", i, s.backends)
		}
		for _, b := range s.backends {
			on[b]++
		}
	}
	if on["web-slow"] == 0 {
		t.Fatalf("no session on the slow backend (sessions per backend %v): the row tests nothing", on)
	}
	twice := 0
	for _, e := range echoes {
		for _, id := range e.Twice() {
			twice++
			t.Errorf("%s received request %s %d times", e.ID, id, e.Seen(id))
		}
	}
	moved := 0.0
	for _, rep := range replicas {
		moved += breakerTransitions(t, rep.Admin)
	}
	row.note = fmt.Sprintf("%d requests received twice; %v breaker transitions; sessions per backend %v; %v", twice, moved, on, took.Round(100*time.Millisecond))
	recordFault(row)
	if moved != 0 {
		t.Errorf("breakers changed state %v times; want none", moved)
	}
	if row.failed != 0 || twice != 0 || row.moved != 0 {
		t.Fatalf("%+v: want 0 failed, 0 received twice, 0 sessions moved", row)
	}
}

type pushBackSession struct {
	backends []string // every backend that answered, in order of first answer
	errs     []string
}

// pushBackRun is one browser: n requests alternating over urls,
// the heads and bodies cycling through every size (4 heads, 7 bodies: 28
// requests make every pair).
func pushBackRun(dial func(context.Context, string, string) (net.Conn, error), urls []string, id, n int) pushBackSession {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 2}
	defer tr.CloseIdleConnections()
	c := &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}
	heads := []int{1, 1 << 10, 16 << 10, 60 << 10}
	bodies := []int{0, 1, 64<<10 + 1, 1 << 20, 300 << 10, 16 << 20, 5}
	var s pushBackSession
	for i := range n {
		head, size := heads[i%len(heads)], bodies[i%len(bodies)]
		body := netns.Pattern(uint64(id*1000+i), size)
		method := "GET"
		if size > 0 {
			method = "POST"
		}
		req, err := http.NewRequest(method, urls[i%len(urls)], bytes.NewReader(body))
		if err != nil {
			panic(err)
		}
		if i%2 == 1 && size > 0 {
			req.ContentLength = -1 // chunked
		}
		testID := fmt.Sprintf("s%d-%d", id, i)
		req.Header.Set("X-Test-Id", testID)
		pad := netns.PadField(head)
		req.Header.Set(pad[0], pad[1])
		if err := pushBackCheck(c, req, body, &s); err != nil {
			s.errs = append(s.errs, fmt.Sprintf("%s %s (head field %d B, body %d B, chunked %v): %v", method, testID, head, size, req.ContentLength < 0, err))
		}
	}
	return s
}

func pushBackCheck(c *http.Client, req *http.Request, body []byte, s *pushBackSession) error {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("after %v: %w", time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d after %v: %.100q", resp.StatusCode, time.Since(start).Round(time.Millisecond), got)
	}
	sum := sha256.Sum256(body)
	if resp.Header.Get("X-Req-Body") != strconv.Itoa(len(body)) || resp.Header.Get("X-Req-Body-Digest") != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("the backend got a body of %s bytes, other than the %d sent", resp.Header.Get("X-Req-Body"), len(body))
	}
	if b := resp.Header.Get("X-Backend-Id"); len(s.backends) == 0 || s.backends[len(s.backends)-1] != b {
		s.backends = append(s.backends, b)
	}
	return nil
}
