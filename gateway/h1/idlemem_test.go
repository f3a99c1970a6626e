package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/procstat"
)

// connGoroutines counts the goroutines serving an h1 connection (in
// conn.serve or conn.run): the ones an idle connection must not keep.
func connGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "h1.(*conn).serve(") || strings.Contains(g, "h1.(*conn).run(") {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// idleSettle waits until kind's idle connections are at rest: h1's parked
// (on Linux), net/http's goroutines blocked in their reads.
func idleSettle(tb testing.TB, kind string) {
	if kind == "h1" && runtime.GOOS == "linux" {
		waitFor(tb, "idle connections still have their goroutines", func() bool { return connGoroutines() == 0 })
		return
	}
	time.Sleep(100 * time.Millisecond)
}

// BenchmarkIdleConnRSS: what an idle keep-alive connection costs a fresh
// server process: the test binary is started again as a server alone
// (h1 or net/http, the trivial handler), H1_IDLE_CONNS connections
// (default 10,000) each send one request, and the child's VmRSS is read
// before and once it settles with all of them idle (h1's parked). Prints
// bytes per connection and the RSS a while after they close.
// H1_PARK_DELAY (a duration; -1ns: at once) sets h1's park delay.
//
//	go test -run '^$' -bench BenchmarkIdleConnRSS -benchtime 1x ./gateway/h1/
func BenchmarkIdleConnRSS(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("H1_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < uint64(n)+256 {
		b.Fatalf("open-file limit %d is too low for %d connections (H1_IDLE_CONNS)", lim.Cur, n)
	}
	for _, kind := range []string{"h1", "net/http"} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				before, open, closed := idleRSS(b, kind, n)
				per := float64(open-before) / float64(n)
				b.ReportMetric(per, "rss-bytes/idle-conn")
				b.ReportMetric(float64(closed)/(1<<20), "rss-MiB-closed")
				fmt.Printf("%s: %d idle connections: RSS %.1f MiB before, %.1f MiB open (%.0f bytes each), %.1f MiB 10s after they closed\n",
					kind, n, float64(before)/(1<<20), float64(open)/(1<<20), per, float64(closed)/(1<<20))
			}
		})
	}
}

// idleRSS runs the server child for kind and measures it.
func idleRSS(b *testing.B, kind string, n int) (before, open, closed int64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleServerChild$")
	cmd.Env = append(os.Environ(), "H1_IDLE_SERVER="+kind)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child serves until its stdin ends
		_ = cmd.Wait()
	}()
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("server child: %v", err)
	}
	addr = strings.TrimSpace(addr)
	rss := func() int64 {
		r := settledRSS(b, cmd.Process.Pid)
		_, _ = io.WriteString(stdin, "m\n")
		classes, _ := out.ReadString('\n')
		fmt.Printf("%s: RSS %.1f MiB; runtime: %s", kind, float64(r)/(1<<20), classes)
		return r
	}
	before = rss()
	conns := make([]*rawClient, 0, n)
	for range n {
		rc := newRawClient(b, addr)
		if err := rc.do(); err != nil {
			b.Fatal(err)
		}
		rc.buf = nil
		conns = append(conns, rc)
	}
	// h1 parks idle connections after defaultParkAfter; its watcher
	// returns the memory their goroutines took a second or two after
	// their count stops falling (release_linux.go): read RSS after both.
	time.Sleep(2*defaultParkAfter + 2*time.Second)
	open = rss()
	for _, rc := range conns {
		rc.c.Close()
	}
	time.Sleep(10 * time.Second)
	return before, open, rss()
}

// settledRSS reads pid's RSS until two readings 200ms apart agree within
// 1%, or 5 seconds pass.
func settledRSS(b *testing.B, pid int) int64 {
	prev := int64(-1)
	for deadline := time.Now().Add(5 * time.Second); ; {
		s, err := procstat.Read(pid)
		if err != nil {
			b.Fatal(err)
		}
		if d := s.RSS - prev; prev >= 0 && max(d, -d) <= prev/100 || time.Now().After(deadline) {
			return s.RSS
		}
		prev = s.RSS
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIdleServerChild is BenchmarkIdleConnRSS's server process: with
// H1_IDLE_SERVER set (h1 or net/http) it serves the trivial handler on a
// loopback port, prints the address and serves until stdin ends; without
// it, it returns at once (the helper-process pattern of os/exec's tests).
func TestIdleServerChild(t *testing.T) {
	kind := os.Getenv("H1_IDLE_SERVER")
	if kind == "" {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "h1":
		s := &Server{Handler: trivial(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		if d, err := time.ParseDuration(os.Getenv("H1_PARK_DELAY")); err == nil {
			s.parkDelay = d // to compare: -1ns parks at once
		}
		go s.Serve(l)
		defer s.Close()
	default:
		s := &http.Server{Handler: trivial(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		go s.Serve(l)
		defer s.Close()
	}
	fmt.Println(l.Addr().String())
	// Each line on stdin asks where the memory is: one line back.
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		fmt.Println(memClasses())
	}
}

// memClasses is where the runtime's memory is, from runtime/metrics.
func memClasses() string {
	names := []string{"/memory/classes/total:bytes", "/memory/classes/heap/stacks:bytes", "/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes", "/memory/classes/heap/released:bytes",
		"/memory/classes/metadata/other:bytes", "/memory/classes/metadata/mspan/inuse:bytes", "/memory/classes/metadata/mspan/free:bytes",
		"/memory/classes/metadata/mcache/inuse:bytes", "/memory/classes/os-stacks:bytes", "/memory/classes/other:bytes",
		"/memory/classes/profiling/buckets:bytes", "/gc/cycles/total:gc-cycles"}
	samples := make([]metrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var b strings.Builder
	for i, s := range samples {
		label := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(names[i], "/memory/classes/"), "/gc/cycles/"), ":bytes")
		if s.Value.Kind() != metrics.KindUint64 {
			continue
		}
		if strings.HasSuffix(names[i], ":bytes") {
			fmt.Fprintf(&b, "%s %.1f MiB, ", label, float64(s.Value.Uint64())/(1<<20))
		} else {
			fmt.Fprintf(&b, "gc cycles %d", s.Value.Uint64())
		}
	}
	return b.String()
}
