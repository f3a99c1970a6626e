package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// `make demo` works: the script starts Consul, Redis, three backends and
// latch; a browser-like client with a cookie jar sticks to one backend,
// clients without cookies are spread; SIGTERM stops everything it started.
func TestMakeDemo(t *testing.T) {
	bin := harness.Binaries(t)
	taken := map[int]bool{}
	ports := map[string]int{
		"HTTP":   freeRun(t, taken, 1),
		"ADMIN":  freeRun(t, taken, 1),
		"REDIS":  freeRun(t, taken, 1),
		"CONSUL": freeRun(t, taken, 4), // HTTP, serf LAN, serf WAN, server
	}
	ports["BACKEND_BASE"] = freeRun(t, taken, 4) // the backends listen on base+1..3
	cmd := exec.Command("bash", filepath.Join(harness.RepoRoot(), "integration", "tools", "demo.sh"))
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "LATCH_BIN="+bin, "LATCH_DEMO_CHECK_INTERVAL=500ms")
	for k, v := range ports {
		cmd.Env = append(cmd.Env, "LATCH_DEMO_"+k+"="+strconv.Itoa(v))
	}
	logPath := filepath.Join(t.TempDir(), "demo.log")
	logf, _ := os.Create(logPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Cleanup(func() { // after the demo is stopped: what it printed
		if data, _ := os.ReadFile(logPath); t.Failed() {
			t.Logf("demo output:\n%s", data)
		}
	})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group this test started
			<-done
		}
	})

	base := fmt.Sprintf("http://127.0.0.1:%d/", ports["HTTP"])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports["ADMIN"])
	harness.WaitFor(t, 60*time.Second, "the demo to be ready (log "+logPath+")", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	waitPassing(t, admin, "web", 3)
	seenAll(t, base, 20*time.Second, "web-1", "web-2", "web-3")
	browser := harness.Client()
	first, _ := backendOf(t, browser, base)
	for i := range 10 {
		if id, status := backendOf(t, browser, base); id != first || status != 200 {
			t.Fatalf("request %d with the cookie jar: %s (%d); want %s", i, id, status, first)
		}
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Fatalf("demo exited with %v (its output is logged below)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of SIGTERM")
	}
	if _, err := http.Get(base); err == nil {
		t.Fatal("latch still answering after the demo stopped")
	}
}

// freeRun returns the first of n consecutive ports that are free on
// 127.0.0.1 for TCP and UDP (Consul's serf ports are both) at the time of
// the call and not in taken, and adds them to taken. They are below
// Linux's ephemeral range (32768 and up), so the connections other tests
// open in parallel cannot take them as local ports before the demo binds
// them.
func freeRun(t *testing.T, taken map[int]bool, n int) int {
	t.Helper()
	const lo, hi = 10000, 32000
	for range 200 {
		base := lo + rand.IntN(hi-lo-n)
		clash := false
		for p := base; p < base+n; p++ {
			clash = clash || taken[p]
		}
		if clash || !portsFree(base, n) {
			continue
		}
		for p := base; p < base+n; p++ {
			taken[p] = true
		}
		return base
	}
	t.Fatalf("no %d consecutive free ports in [%d, %d)", n, lo, hi)
	return 0
}

func portsFree(base, n int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, l)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u)
	}
	return true
}
