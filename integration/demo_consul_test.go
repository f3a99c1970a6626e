package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// fakeConsul writes a `consul` that says it is version v (and does
// nothing else) into a folder of its own, and returns that folder.
func fakeConsul(t *testing.T, v string) string {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\necho 'Consul v%s'\necho 'Revision 0123abcd'\n", v)
	if err := os.WriteFile(filepath.Join(dir, "consul"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDemoWhichConsul: which Consul `make demo` runs (demo.sh
// --which-consul): CONSUL_BIN when supported (refused otherwise), else a
// consul on PATH when supported (skipped otherwise, saying why), else the
// pinned one in .tools/bin; an agent given by LATCH_DEMO_CONSUL_ADDR
// instead of any.
func TestDemoWhichConsul(t *testing.T) {
	root := harness.RepoRoot()
	pinned := filepath.Join(root, ".tools", "bin", "consul")
	if _, err := os.Stat(pinned); err != nil {
		t.Fatalf("%s: run `make consul`: %v", pinned, err)
	}
	supported, old, tooNew := fakeConsul(t, "1.21.3"), fakeConsul(t, "1.20.0"), fakeConsul(t, "1.23.0")
	path := os.Getenv("PATH")
	for _, tt := range []struct {
		name string
		env  []string
		ok   bool
		want string
	}{
		{"a supported consul on PATH", []string{"PATH=" + supported + ":" + path},
			true, "demo: consul " + supported + "/consul (v1.21.3)"},
		{"an older consul on PATH: the pinned one", []string{"PATH=" + old + ":" + path},
			true, "demo: skipping " + old + "/consul (Consul 1.20.0): supported: v1.20.1 up to (not including) v1.23.0\ndemo: consul " + pinned + " (v1.22.0)"},
		{"a newer consul on PATH: the pinned one", []string{"PATH=" + tooNew + ":" + path},
			true, "demo: skipping " + tooNew + "/consul (Consul 1.23.0)"},
		{"CONSUL_BIN supported, over PATH's", []string{"CONSUL_BIN=" + supported + "/consul", "PATH=" + old + ":" + path},
			true, "demo: consul " + supported + "/consul (v1.21.3)"},
		{"CONSUL_BIN too old: refused", []string{"CONSUL_BIN=" + old + "/consul"},
			false, "demo: CONSUL_BIN=" + old + "/consul is Consul 1.20.0; supported: v1.20.1 up to (not including) v1.23.0"},
		{"an agent already running", []string{"LATCH_DEMO_CONSUL_ADDR=127.0.0.1:18500", "CONSUL_BIN=" + old + "/consul"},
			true, "demo: consul agent at 127.0.0.1:18500 (LATCH_DEMO_CONSUL_ADDR)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("bash", filepath.Join(root, "integration", "tools", "demo.sh"), "--which-consul")
			cmd.Dir, cmd.Env = root, append(demoEnv(), tt.env...)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tt.ok || !strings.Contains(string(out), tt.want) {
				t.Fatalf("demo.sh --which-consul: %v\n%s\nwant success %v and\n%s", err, out, tt.ok, tt.want)
			}
		})
	}
}

// TestDemoOwnConsul: `make demo` with LATCH_DEMO_CONSUL_ADDR joins the
// user's agent (on ports other than the demo's, which stay free): it
// starts no Consul, its backends register there and latch routes to
// them; Ctrl-C deregisters them and leaves the user's agent running.
func TestDemoOwnConsul(t *testing.T) {
	root := harness.RepoRoot()
	c := harness.StartConsul(t)
	taken := map[int]bool{}
	ports := map[string]int{"HTTP": freeRun(t, taken, 1), "ADMIN": freeRun(t, taken, 1), "REDIS": freeRun(t, taken, 1),
		"BACKEND_BASE": freeRun(t, taken, 4)}
	env := append(demoEnv(), "LATCH_DEMO_CONSUL_ADDR="+c.HTTPAddr)
	for k, v := range ports {
		env = append(env, "LATCH_DEMO_"+k+"="+strconv.Itoa(v))
	}
	d := startDemo(t, root, env)
	if !strings.Contains(d.printed(), "demo: consul agent at "+c.HTTPAddr+" (v1.") {
		t.Errorf("make demo does not say it uses the agent at %s with its version", c.HTTPAddr)
	}
	if strings.Contains(d.printed(), "demo: consul /") {
		t.Errorf("make demo started a Consul of its own")
	}
	client := c.Client(t)
	harness.WaitFor(t, 30*time.Second, "web-1..3 passing in the user's agent", func() bool {
		entries, _, err := client.Health().Service("web", "", true, nil)
		return err == nil && len(entries) == 3
	})
	seenAll(t, fmt.Sprintf("http://127.0.0.1:%d/", ports["HTTP"]), 30*time.Second, "web-1", "web-2", "web-3")

	d.interrupt(t)
	services, _, err := client.Catalog().Service("web", "", nil)
	if err != nil || len(services) != 0 {
		t.Errorf("after Ctrl-C, the user's agent: %d instances of web (%v); want the demo's deregistered", len(services), err)
	}
	if leader, err := client.Status().Leader(); err != nil || leader == "" {
		t.Errorf("after Ctrl-C, the user's agent no longer answers: %q %v", leader, err)
	}
}
