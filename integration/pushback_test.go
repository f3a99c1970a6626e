package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/integration/harness/netns"
	"github.com/latchgw/latch/integration/harness/testcert"
)

// TestPushBack is every framing case through a latch process over veth,
// where the network pushes back: backends on hosts of their own (network
// namespaces, as docker compose puts them), clients on another, latch in
// between in the test's namespace. Each case runs under each way of
// pushing back: a backend that reads at once, one that reads slowly
// through a small receive buffer, one that dribbles its answer a byte at
// a time and stalls mid-head and mid-body, a backend behind a
// rate-limited link, a client that dribbles the start of each request a
// byte at a time, stalls mid-head and mid-body and reads slowly, and TLS both ways (a second latch) to a slow reader. Every answer is checked byte for byte (the backend's
// digest of what it got against what the client sent, the client's of
// what it got against what the backend sent); no request may reach a
// backend twice, and no breaker may move.
func TestPushBack(t *testing.T) {
	harness.NeedNetns(t)
	hosts := harness.StartHosts(t, 3)
	near, far, clients := hosts.Hosts[0], hosts.Hosts[1], hosts.Hosts[2]
	hosts.Limit(t, far, "200mbit")
	consul, redis := harness.StartConsul(t), harness.StartRedis(t)
	slow := netns.EchoOptions{Sock: netns.SockOpts{RcvBuf: 4096},
		Read: netns.Pace{Chunk: 1024, Pause: time.Millisecond, Budget: 256 << 10}}
	dribble := netns.EchoOptions{StallBody: 50 * time.Millisecond,
		Write: netns.Pace{Chunk: 1, Budget: 32 << 10, Stalls: []int64{10}, StallFor: 50 * time.Millisecond}}
	echoes := map[string]*netns.Echo{
		"fast":    netns.StartEcho(t, near, "fast", netns.EchoOptions{}),
		"slow":    netns.StartEcho(t, near, "slow", slow),
		"dribble": netns.StartEcho(t, near, "dribble", dribble),
		"limited": netns.StartEcho(t, far, "limited", netns.EchoOptions{}),
	}
	cfg := harness.LatchConfig(consul.HTTPAddr, redis.URL, "fast")
	cfg.Routes = nil
	for svc, e := range echoes {
		consul.Register(t, e.ID, svc, e.Addr)
		cfg.Routes = append(cfg.Routes, config.Route{Service: svc, Host: svc + ".test"})
	}
	cfg.Listen = net.JoinHostPort(hosts.Gateway, strconv.Itoa(harness.FreePort(t)))
	cfg.Admin.Listen = "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	// A request whose head never reaches its backend ends in 5 s, not the
	// default minute (a hang is what this table looks for).
	cfg.Transport.ResponseHeaderTimeout = config.Set(5 * time.Second)
	latch := harness.StartLatchProcess(t, nil, cfg)
	for svc := range echoes {
		waitPassing(t, latch.Admin, svc, 1)
	}
	tlsAt, tlsAdmin, clientTLS := startPushBackTLS(t, hosts, consul, redis, near, echoes, slow)
	modes := []struct {
		name, backend string
		client        netns.Client
		addr, admin   string // latch's (default: the plain one's)
	}{
		{name: "backend reads at once", backend: "fast"},
		{name: "backend reads slowly", backend: "slow"},
		{name: "backend dribbles", backend: "dribble"},
		{name: "rate-limited link", backend: "limited"},
		{name: "client dribbles, stalls and reads slowly", backend: "fast", client: netns.Client{
			Sock: netns.SockOpts{RcvBuf: 4096}, Stall: 100 * time.Millisecond,
			Write: netns.Pace{Chunk: 1, Budget: 4 << 10}, // each request's first 4 KiB a byte at a time
			Read:  netns.Pace{Chunk: 1024, Pause: time.Millisecond, Budget: 256 << 10}}},
		{name: "TLS both ways, backend reads slowly", backend: "tls", client: netns.Client{TLS: clientTLS},
			addr: tlsAt, admin: tlsAdmin},
	}
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := m.client
			c.Host, c.Addr, c.Timeout = clients, cfg.Listen, 15*time.Second
			admin := latch.Admin
			if m.addr != "" {
				c.Addr, admin = m.addr, m.admin
			}
			moved := breakerTransitions(t, admin)
			for _, pc := range pushBackCases(fmt.Sprintf("m%d", i), m.backend+".test") {
				t.Run(pc.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					start := time.Now()
					var err error
					if pc.echo != nil {
						err = c.Upgrade(ctx, pc.xs[0], pc.echo)
					} else {
						err = c.Do(ctx, pc.xs...)
					}
					if err != nil {
						t.Errorf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
					}
					for _, x := range pc.xs {
						if n := echoes[m.backend].Seen(testID(x)); n > 1 {
							t.Errorf("%s reached the backend %d times", testID(x), n)
						}
					}
				})
			}
			if now := breakerTransitions(t, admin); now != moved {
				t.Errorf("breakers changed state %v times during %q; want none", now-moved, m.name)
			}
		})
	}
}

// startPushBackTLS starts a second latch process for TestPushBack's TLS
// row: HTTPS to its clients (as latch.test) and to its backend, an Echo
// on host that reads as slowly as slow says (as echo.test), added to
// echoes as "tls". It returns latch's public and admin addresses and the
// clients' TLS config.
func startPushBackTLS(t *testing.T, hosts *harness.Hosts, consul *harness.Consul, redis *harness.Redis,
	host *netns.Host, echoes map[string]*netns.Echo, slow netns.EchoOptions) (addr, admin string, client *tls.Config) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(name string) (certPEM, keyPEM []byte) {
		c, k, _, err := ca.Issue(name)
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	echoCert, echoKey := issue("echo.test")
	pair, err := tls.X509KeyPair(echoCert, echoKey)
	if err != nil {
		t.Fatal(err)
	}
	slow.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	echoes["tls"] = netns.StartEcho(t, host, "tls", slow)
	consul.Register(t, "tls", "tls", echoes["tls"].Addr)
	latchCert, latchKey := issue("latch.test")
	cfg := harness.LatchConfig(consul.HTTPAddr, redis.URL, "tls")
	cfg.Routes[0].Host = "tls.test"
	cfg.Routes[0].BackendTLS = config.BackendTLS{Enabled: config.Set(true),
		CAFile: config.Set(write("ca.pem", ca.PEM())), ServerName: config.Set("echo.test")}
	cfg.TLS.Certificates = []config.Certificate{{CertFile: write("latch.pem", latchCert), KeyFile: write("latch.key", latchKey)}}
	cfg.Listen = net.JoinHostPort(hosts.Gateway, strconv.Itoa(harness.FreePort(t)))
	cfg.Admin.Listen = "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	cfg.Transport.ResponseHeaderTimeout = config.Set(5 * time.Second)
	l := harness.StartLatchProcess(t, nil, cfg)
	waitPassing(t, l.Admin, "tls", 1)
	return cfg.Listen, l.Admin, &tls.Config{RootCAs: ca.Pool, ServerName: "latch.test", NextProtos: []string{"http/1.1"}}
}

type pushBackCase struct {
	name string
	xs   []*netns.Exchange
	echo []byte // an upgrade: the bytes to echo after 101
}

var pushBackSizes = []int{0, 1, 64<<10 + 1, 16 << 20}

// pushBackCases are the framing cases of TestPushBack, to host: heads from
// a byte of field to 60 KiB of cookie (under the default
// server.max_header_bytes of 64 KiB), request and response bodies by
// Content-Length and chunked from 0 to 16 MiB, a 30 KiB response head,
// pipelined requests, Expect: 100-continue and an upgrade. Each request's
// X-Test-Id starts with prefix.
func pushBackCases(prefix, host string) []pushBackCase {
	var cases []pushBackCase
	seq := 0
	x := func(method string, hdr ...[2]string) *netns.Exchange {
		seq++
		id := prefix + "-" + strconv.Itoa(seq)
		return &netns.Exchange{Method: method, Path: "/pb/" + strconv.Itoa(seq), Host: host,
			Header: append(hdr, [2]string{"X-Test-Id", id}), Seed: uint64(seq)}
	}
	add := func(name string, xs ...*netns.Exchange) {
		cases = append(cases, pushBackCase{name: name, xs: xs})
	}
	for _, n := range []int{1, 4 << 10, 32 << 10} {
		add(fmt.Sprintf("GET head field %s", size(n)), x("GET", netns.PadField(n)))
	}
	add("GET head cookie 60 KiB", x("GET", [2]string{"Cookie", "pad=" + netns.PadText(60<<10)}))
	for _, chunked := range []bool{false, true} {
		framing := map[bool]string{false: "content-length", true: "chunked"}[chunked]
		for _, n := range pushBackSizes {
			up := x("POST")
			up.Body, up.Chunked = netns.Pattern(uint64(seq), n), chunked
			add(fmt.Sprintf("POST body %s %s", framing, size(n)), up)
			down := x("GET")
			down.Size, down.RespChunked = n, chunked
			add(fmt.Sprintf("GET response %s %s", framing, size(n)), down)
		}
	}
	pad := x("GET")
	pad.HPad, pad.Size = 30<<10, 100
	add("GET response head 30 KiB", pad)
	p1, p2, p3 := x("GET", netns.PadField(8<<10)), x("POST"), x("POST")
	p2.Body = netns.Pattern(2, 64<<10+1)
	p3.Body, p3.Chunked, p3.Size, p3.RespChunked = netns.Pattern(3, 100000), true, 100000, true
	add("pipelined GET, POST, chunked POST", p1, p2, p3)
	e := x("PUT")
	e.Body, e.Expect100, e.Size = netns.Pattern(4, 1<<20), true, 10
	add("PUT 1 MiB Expect: 100-continue", e)
	up := x("GET", [2]string{"Connection", "Upgrade"}, [2]string{"Upgrade", "websocket"})
	cases = append(cases, pushBackCase{name: "upgrade, 1 MiB echoed", xs: []*netns.Exchange{up}, echo: netns.Pattern(5, 1<<20)})
	return cases
}

func testID(x *netns.Exchange) string {
	for _, f := range x.Header {
		if f[0] == "X-Test-Id" {
			return f[1]
		}
	}
	return ""
}

func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n > 1<<10:
		return fmt.Sprintf("%d KiB+%d", n>>10, n%(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// breakerTransitions is the sum of latch_breaker_transitions_total, every
// backend and state.
func breakerTransitions(t *testing.T, adminURL string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "latch_breaker_transitions_total"); ok {
			f, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metric %q: %v", sc.Text(), err)
			}
			sum += f
		}
	}
	return sum
}
