package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The zero-downtime upgrade (README): a second latch starts on the same
// address (server.reuse_port), then the first gets SIGTERM, drains and
// exits; three times over, under load through the port, half of it on a
// new connection per request (the connections a closing listener could
// drop from its accept queue). No request fails, and sessions keep their
// backends across processes (the cookie's signed hint). Both servers of
// the public listener (server.implementation) serve the shared listener.
func TestUpgradeReusePort(t *testing.T) {
	for _, impl := range []string{"net/http", "h1"} {
		t.Run(impl, func(t *testing.T) { testUpgrade(t, impl) })
	}
}

func testUpgrade(t *testing.T, impl string) {
	a, b := idBackend(t, "a"), idBackend(t, "b")
	path := filepath.Join(t.TempDir(), "latch.yaml")
	cfg := fmt.Sprintf("server: {reuse_port: true, implementation: %s}\nconsul: {disabled: true}\n"+
		"cookie: {secrets: [0123456789abcdef0123456789abcdef]}\n"+
		"routes:\n  - {service: web, path_prefix: /, backends: [%s, %s]}\n", impl, a, b)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	start := func() *latchProc {
		admin := freeAddr(t)
		p := startLatch(t, "-config", path, "-listen", listen, "-admin-listen", admin)
		p.waitReady(t, admin)
		return p
	}
	old := start()
	l := startLoad("http://"+listen+"/", 6, false, true)
	defer l.halt()
	l.waitRequests(t, 100)
	for i := range 3 {
		next := start() // both listen now
		l.waitRequests(t, 100)
		if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-old.exited:
			if old.waitErr != nil {
				t.Fatalf("upgrade %d: the old latch exited with %v; want 0", i, old.waitErr)
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("upgrade %d: the old latch did not exit within 40s of SIGTERM", i)
		}
		if data, _ := os.ReadFile(old.logPath); !strings.Contains(string(data), "shared listener drained") {
			t.Fatalf("upgrade %d: the old latch did not drain its listener", i)
		}
		l.waitRequests(t, 100)
		old = next
	}
	l.finish(t)
}
