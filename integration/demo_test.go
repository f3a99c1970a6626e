package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// The demo's documented default ports (integration/tools/demo.sh).
var demoDefaults = map[string]int{"HTTP": 8080, "ADMIN": 9090, "CONSUL": 8500, "REDIS": 6380, "BACKEND_BASE": 8080}

// `make demo` works as the README's quick start says: the test runs `make
// demo` on its default ports whenever they are all free on this machine
// (else on free ports, and says so loudly), waits for the message the user
// waits for, runs the README's own curl lines (a cookie is set; the same
// backend 20 times with the cookie jar; /admin/backends as documented),
// and stops it as the user does, with Ctrl-C: SIGINT to its process group.
// Nothing it started may be left, and its ports are free again.
//
// No t.Parallel: the compose suite in this package uses the same ports.
func TestMakeDemo(t *testing.T) {
	root := harness.RepoRoot()
	env := demoEnv()
	ports := demoDefaults
	if busy, ok := demoPortsBusy(t, root, env); !ok {
		t.Logf("!!!!!!!! the demo's default ports are not all free on this machine:\n%s"+
			"!!!!!!!! so this run does NOT test the defaults: it moves the demo to free ports", busy)
		taken := map[int]bool{}
		ports = map[string]int{
			"HTTP":   freeRun(t, taken, 1),
			"ADMIN":  freeRun(t, taken, 1),
			"REDIS":  freeRun(t, taken, 1),
			"CONSUL": freeRun(t, taken, 4), // HTTP, serf LAN, serf WAN, server RPC
		}
		ports["BACKEND_BASE"] = freeRun(t, taken, 4) // the backends listen on base+1..3
		for k, v := range ports {
			env = append(env, "LATCH_DEMO_"+k+"="+strconv.Itoa(v))
		}
		t.Logf("!!!!!!!! demo on ports %v", ports)
	} else {
		t.Logf("demo on its default ports %v", ports)
	}

	d := startDemo(t, root, env)
	for _, line := range strings.Split(d.printed(), "\n") {
		if strings.HasPrefix(line, "demo: consul") {
			t.Log(line) // which Consul ran (make compat: the oldest supported)
		}
	}
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports["ADMIN"])
	waitPassing(t, admin, "web", 3)

	newSession, sticky, backends := readmeCurls(t, ports)
	jar := filepath.Join(t.TempDir(), "jar")
	sticky = strings.ReplaceAll(sticky, "/tmp/jar", jar)
	// New sessions: a cookie each time, balanced over the three backends.
	seen := map[string]bool{}
	harness.WaitFor(t, 30*time.Second, "new sessions on web-1, web-2 and web-3", func() bool {
		out := curl(t, newSession)
		if !regexp.MustCompile(`(?m)^HTTP/1\.1 200 `).MatchString(out) ||
			!regexp.MustCompile(`(?im)^set-cookie: latch=[^;\s]+`).MatchString(out) {
			t.Fatalf("%s: want 200 and a latch cookie; got\n%s", newSession, out)
		}
		seen[backendInBody(t, out[strings.Index(out, "\r\n\r\n"):])] = true
		return seen["web-1"] && seen["web-2"] && seen["web-3"]
	})
	// Sticky: the first request sets the jar's cookie, the next 20 follow it.
	first := backendInBody(t, curl(t, sticky))
	for i := range 20 {
		if id := backendInBody(t, curl(t, sticky)); id != first {
			t.Fatalf("%s, request %d: %s; want %s every time", sticky, i+1, id, first)
		}
	}
	t.Logf("README's sticky curl: %s 21 times out of 21", first)
	// /admin/backends as the README documents it: per service a stale flag,
	// per backend health, weight, breaker, in-flight, EWMA latency, drained
	// and live sessions (pins reach Redis in the background: polled).
	harness.WaitFor(t, 20*time.Second, "/admin/backends to count "+first+"'s session", func() bool {
		return demoAdminOK(t, curl(t, backends), first)
	})

	d.interrupt(t)
	if busy, ok := demoPortsBusy(t, root, env); !ok {
		t.Fatalf("after Ctrl-C, ports still held:\n%s", busy)
	}
}

// demoEnv is this process's environment without LATCH_DEMO_* settings: the
// demo runs as a user who set none.
func demoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LATCH_DEMO_") && !strings.HasPrefix(kv, "LATCH_BIN=") {
			env = append(env, kv)
		}
	}
	return env
}

// demoPortsBusy runs the demo's own port check (demo.sh --check-ports):
// what it printed, and whether every port is free.
func demoPortsBusy(t *testing.T, root string, env []string) (string, bool) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(root, "integration", "tools", "demo.sh"), "--check-ports")
	cmd.Dir, cmd.Env = root, env
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// readmeCurls returns the three curl lines of the README's quick start,
// pointed at ports.
func readmeCurls(t *testing.T, ports map[string]int) (newSession, sticky, backends string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(data, []byte("## Quick start"))
	end := bytes.Index(data[start+1:], []byte("\n## "))
	if start < 0 || end < 0 {
		t.Fatal("README has no Quick start section")
	}
	var curls []string
	for _, line := range strings.Split(string(data[start:start+1+end]), "\n") {
		if strings.HasPrefix(line, "curl ") {
			line = strings.ReplaceAll(line, "localhost:8080", "localhost:"+strconv.Itoa(ports["HTTP"]))
			line = strings.ReplaceAll(line, "localhost:9090", "localhost:"+strconv.Itoa(ports["ADMIN"]))
			curls = append(curls, line)
		}
	}
	if len(curls) != 3 || !strings.Contains(curls[0], " -i ") || !strings.Contains(curls[1], "-b /tmp/jar -c /tmp/jar") ||
		!strings.Contains(curls[2], "/admin/backends") {
		t.Fatalf("README's quick start curls changed; this test walks: new session (-i), sticky (-b/-c /tmp/jar), /admin/backends; got %q", curls)
	}
	return curls[0], curls[1], curls[2]
}

// curl runs one README line in bash, as a user pastes it: its stdout.
func curl(t *testing.T, line string) string {
	t.Helper()
	out, err := exec.Command("bash", "-c", "set -e; "+line).Output()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return string(out)
}

// backendInBody is the id the demo backend put in its JSON answer.
func backendInBody(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &v); err != nil || v.ID == "" {
		t.Fatalf("not a demo backend's answer (%v): %q", err, body)
	}
	return v.ID
}

// demoAdminOK checks /admin/backends against the README: service web, not
// stale, three passing backends with closed breakers and every documented
// field, and a live session on the sticky one.
func demoAdminOK(t *testing.T, out, sticky string) bool {
	t.Helper()
	var v struct {
		Services []struct {
			Service  string                       `json:"service"`
			Stale    *bool                        `json:"stale"`
			Backends []map[string]json.RawMessage `json:"backends"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Services) != 1 {
		t.Fatalf("/admin/backends: %v; want one service:\n%s", err, out)
	}
	s := v.Services[0]
	if s.Service != "web" || s.Stale == nil || *s.Stale || len(s.Backends) != 3 {
		t.Fatalf("/admin/backends: want service web, stale false, 3 backends:\n%s", out)
	}
	live := false
	for _, b := range s.Backends {
		for _, k := range []string{"health", "weight", "breaker", "in_flight", "latency_ms", "drained", "sessions"} {
			if _, ok := b[k]; !ok {
				t.Fatalf("/admin/backends: a backend without %q:\n%s", k, out)
			}
		}
		if string(b["health"]) != `"passing"` || string(b["breaker"]) != `"closed"` {
			t.Fatalf("/admin/backends: want every backend passing, breaker closed:\n%s", out)
		}
		n, _ := strconv.Atoi(string(b["sessions"]))
		live = live || (string(b["id"]) == strconv.Quote(sticky) && n >= 1)
	}
	return live
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

// The quick start's prerequisites name the Go version go.mod asks for.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	readme, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "README.md"))
	if err != nil || m == nil {
		t.Fatalf("go.mod's go line: %q, README: %v", m, err)
	}
	if want := "You need Go " + string(m[1]) + " or newer"; !bytes.Contains(readme, []byte(want)) {
		t.Fatalf("README's quick start does not say %q (go.mod: go %s)", want, m[1])
	}
}

// `LATCH_CONFIG=file make demo` runs the demo with the user's config file
// (README, "Quick start"), and a file latch refuses stops the demo before
// anything starts, the error naming the file, the route as the file
// writes it and its line. Before issue 29 the demo added its -service
// route to the file's, so a file routing / was refused as
// "routes[1]: same host and path_prefix as routes[0]".
func TestMakeDemoConfigFile(t *testing.T) {
	root := harness.RepoRoot()
	tests := []struct {
		name, yaml string
		want       string // in the output; FILE is the file's path
	}{
		{"a file routing the demo's service", "routes:\n  - service: web\n  - service: web\n    path_prefix: /static\n    sticky:\n      ttl: 1ms\n",
			"FILE: routes[1].sticky.ttl: must be at least 1s (line 6)"},
		{"two routes the same", "routes:\n  - service: web\n  - service: web\n",
			"FILE: routes[1]: same host and path_prefix as routes[0] (line 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "latch.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("make", "--no-print-directory", "demo")
			cmd.Dir, cmd.Env = root, append(demoEnv(), "LATCH_CONFIG="+path)
			out, err := cmd.CombinedOutput()
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err == nil || !strings.Contains(string(out), want) ||
				!strings.Contains(string(out), "nothing was started") || strings.Contains(string(out), "latch demo is up") {
				t.Fatalf("make demo: %v\n%s\nwant it refused before starting anything, naming %q", err, out, want)
			}
		})
	}
}
