package integration

import (
	"fmt"
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
	ports := map[string]int{}
	for _, k := range []string{"HTTP", "ADMIN", "REDIS"} {
		ports[k] = harness.FreePort(t)
	}
	// Consul needs 4 consecutive ports and the backends 3 after a base.
	ports["CONSUL"] = 20000 + harness.FreePort(t)%20000
	ports["BACKEND_BASE"] = 40000 + harness.FreePort(t)%20000
	cmd := exec.Command("bash", filepath.Join(harness.RepoRoot(), "integration", "tools", "demo.sh"))
	cmd.Dir = harness.RepoRoot()
	cmd.Env = append(os.Environ(), "LATCH_BIN="+bin, "LATCH_DEMO_CHECK_INTERVAL=500ms")
	for k, v := range ports {
		cmd.Env = append(cmd.Env, "LATCH_DEMO_"+k+"="+strconv.Itoa(v))
	}
	logPath := filepath.Join(t.TempDir(), "demo.log")
	logf, _ := os.Create(logPath)
	cmd.Stdout, cmd.Stderr = logf, logf
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
			data, _ := os.ReadFile(logPath)
			t.Fatalf("demo exited with %v:\n%s", err, data)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of SIGTERM")
	}
	if _, err := http.Get(base); err == nil {
		t.Fatal("latch still answering after the demo stopped")
	}
}
