package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/session"
)

// idBackend answers "<id> <path>" with X-Backend-Id; /slow/ paths wait
// 300ms first.
func idBackend(t *testing.T, id string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/slow") {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Backend-Id", id)
		io.WriteString(w, id+" "+r.URL.Path)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// load is bounded client traffic through latch: workers each keep one
// session (a cookie, updated from Set-Cookie as a browser does) and
// record failures: errors, non-200 answers, a session changing backend.
type load struct {
	ok, failed  atomic.Int64
	slow        atomic.Int64 // answers that took over 900ms (a SYN retransmitted)
	maxLatency  atomic.Int64 // nanoseconds
	mu          sync.Mutex
	failures    []string
	stop        chan struct{}
	wg          sync.WaitGroup
	checkSticky bool
}

// startLoad runs workers against url until stopped; keepAlive false
// opens a new connection per request (where a listener's queue matters).
func startLoad(url string, workers int, keepAlive, checkSticky bool) *load {
	l := &load{stop: make(chan struct{}), checkSticky: checkSticky}
	for w := range workers {
		client := &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: !keepAlive && w%2 == 0}}
		l.wg.Go(func() {
			defer client.CloseIdleConnections()
			cookie, backend := "", ""
			for n := 0; n < 100_000; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					l.fail(fmt.Sprintf("worker %d: %v", w, err))
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				if d > 900*time.Millisecond {
					l.slow.Add(1)
				}
				for old := l.maxLatency.Load(); int64(d) > old && !l.maxLatency.CompareAndSwap(old, int64(d)); old = l.maxLatency.Load() {
				}
				got := resp.Header.Get("X-Backend-Id")
				switch {
				case resp.StatusCode != 200:
					l.fail(fmt.Sprintf("worker %d: status %d", w, resp.StatusCode))
					continue
				case l.checkSticky && backend != "" && got != backend:
					l.fail(fmt.Sprintf("worker %d: session moved from %s to %s", w, backend, got))
				default:
					l.ok.Add(1)
				}
				backend = got
				for _, c := range resp.Cookies() {
					if c.Name == "latch" {
						cookie = "latch=" + c.Value
					}
				}
				time.Sleep(time.Millisecond) // bounded: a few hundred requests a second per worker at most
			}
		})
	}
	return l
}

func (l *load) fail(why string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, why)
	}
	l.mu.Unlock()
}

// waitRequests waits until n more requests succeeded.
func (l *load) waitRequests(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d ok, %d failed", l.ok.Load(), l.failed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// halt stops the workers and waits for them; calling it again does
// nothing (tests defer it and also finish).
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
		l.wg.Wait()
	}
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	l.halt()
	t.Logf("load: %d requests ok, %d failed, %d over 900ms, slowest %v",
		l.ok.Load(), l.failed.Load(), l.slow.Load(), time.Duration(l.maxLatency.Load()).Round(time.Millisecond))
	if l.failed.Load() != 0 {
		t.Errorf("%d failed requests; want 0. First: %q", l.failed.Load(), l.failures)
	}
}

// session0 sends one GET with cookie and returns latch's cookie (the one
// sent when none was set) and the backend that answered.
func session0(t *testing.T, url, cookie string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "latch" {
			cookie = "latch=" + ck.Value
		}
	}
	return cookie, resp.Header.Get("X-Backend-Id")
}

// adminDo sends an admin request with the token and returns status and body.
func adminDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// reloadCount reads latch_config_reload_total{result} from /metrics.
func reloadCount(t *testing.T, admin, result string) int {
	t.Helper()
	_, body := adminDo(t, http.MethodGet, "http://"+admin+"/metrics")
	m := regexp.MustCompile(`(?m)^latch_config_reload_total\{result="` + result + `"\} (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no latch_config_reload_total{result=%q} in /metrics", result)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Twenty reloads under load, through SIGHUP on a real latch process and
// POST /admin/reload, alternating valid and invalid files: no request
// fails, no session changes backend, a refused file changes nothing, and
// a valid one takes effect (a route added and removed, its timeout, the
// cookie secret rotated with the old one still accepted). The flags keep
// overriding the file on every reload.
func TestReloadUnderLoad(t *testing.T) {
	a, b, c := idBackend(t, "a"), idBackend(t, "b"), idBackend(t, "c")
	const old, rotated = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	dir := t.TempDir()
	path := filepath.Join(dir, "latch.yaml")
	write := func(content string) {
		t.Helper()
		// Written whole then renamed: a reload never reads half a file.
		if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	// listen is overridden by the flag: a reload must not report it.
	file := func(secrets string, extra bool) string {
		s := fmt.Sprintf("listen: 127.0.0.1:1\nconsul: {disabled: true}\ncookie: {secrets: [%s]}\nroutes:\n"+
			"  - {service: web, path_prefix: /, backends: [%s, %s]}\n", secrets, a, b)
		if extra {
			s += fmt.Sprintf("  - {service: extra, path_prefix: /extra, backends: [%s], timeout: 100ms, retry: {attempts: 1}}\n", c)
		}
		return s
	}
	invalid := []string{
		file(old, false) + "  - {service: web, path_prefix: /bad, breaker: {failure_ratio: 2}}\n",
		"routes: [service: web\n", // not YAML
		file(old, false) + "server: {no_such_field: 1}\n",
	}
	write(file(old, false))
	listen, admin := freeAddr(t), freeAddr(t)
	p := startLatch(t, "-config", path, "-listen", listen, "-admin-listen", admin, "-admin-token", "tok")
	p.waitReady(t, admin)

	status := func(path string) (int, string) {
		code, body, err := get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	if code, _ := status("/extra/x"); code != 200 {
		t.Fatalf("/extra/x before any reload: %d", code)
	}
	// A session made before the rotation, its cookie signed with the old
	// secret alone.
	oldCookie, oldBackend := session0(t, "http://"+listen+"/", "")
	l := startLoad("http://"+listen+"/", 4, true, true)
	defer l.halt()
	l.waitRequests(t, 50)

	extra := false // whether the running config has the /extra route
	secrets := old
	for i := range 20 {
		valid := i%2 == 0
		content := invalid[i/2%len(invalid)]
		if valid {
			extra = !extra
			if i >= 4 {
				secrets = rotated + ", " + old // rotated once, the old one kept
			}
			content = file(secrets, extra)
		}
		write(content)
		result := "error"
		if valid {
			result = "ok"
		}
		before := reloadCount(t, admin, result)
		how := "SIGHUP"
		if i%4 >= 2 {
			how = "POST /admin/reload"
			code, body := adminDo(t, http.MethodPost, "http://"+admin+"/admin/reload")
			switch {
			case valid && (code != 200 || !strings.Contains(body, `"needs_restart": []`)):
				t.Fatalf("reload %d (valid): %d %s; want 200 and nothing needing a restart (the -listen flag still wins)", i, code, body)
			case !valid && code != 422:
				t.Fatalf("reload %d (invalid): %d %s; want 422", i, code, body)
			}
		} else if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for reloadCount(t, admin, result) != before+1 {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d by %s: latch_config_reload_total{result=%q} did not move", i, how, result)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The running config is the last valid one.
		code, body := status("/extra/x")
		if extra && (code != 200 || body != "c /extra/x") {
			t.Fatalf("reload %d by %s: /extra/x %d %q; want c's answer (route added)", i, how, code, body)
		}
		if !extra && (code != 200 || strings.HasPrefix(body, "c ")) {
			t.Fatalf("reload %d by %s: /extra/x %d %q; want web's answer (route removed)", i, how, code, body)
		}
		if extra {
			if code, _ := status("/extra/slow"); code != http.StatusGatewayTimeout {
				t.Fatalf("reload %d: /extra/slow %d; want 504 (the route's 100ms timeout)", i, code)
			}
		}
		l.waitRequests(t, 20)
	}
	l.finish(t)
	if n := reloadCount(t, admin, "ok"); n != 10 {
		t.Errorf("reloads ok: %d; want 10", n)
	}
	if n := reloadCount(t, admin, "error"); n != 10 {
		t.Errorf("reloads refused: %d; want 10", n)
	}
	// The secret rotated: new cookies are signed with the new secret (the
	// old one alone does not verify them), and a cookie signed with the
	// old one is still honoured (its session keeps its backend).
	fresh, _ := session0(t, "http://"+listen+"/", "")
	fresh = strings.TrimPrefix(fresh, "latch=")
	oldCodec, _ := session.NewCodec([][]byte{[]byte(old)})
	newCodec, _ := session.NewCodec([][]byte{[]byte(rotated)})
	if _, ok := newCodec.Decode(fresh); !ok {
		t.Error("a new cookie does not verify with the rotated secret")
	}
	if _, ok := oldCodec.Decode(fresh); ok {
		t.Error("a new cookie verifies with the old secret: not signed with the rotated one")
	}
	if _, ok := oldCodec.Decode(strings.TrimPrefix(oldCookie, "latch=")); !ok {
		t.Fatal("the session's first cookie is not signed with the old secret")
	}
	for range 5 {
		if _, got := session0(t, "http://"+listen+"/", oldCookie); got != oldBackend {
			t.Fatalf("a session whose cookie has the old secret moved from %s to %s", oldBackend, got)
		}
	}
	data, _ := os.ReadFile(p.logPath)
	if !strings.Contains(string(data), "routes[1].breaker: failure_ratio") {
		t.Error("the log does not name the refused field (routes[1].breaker: failure_ratio)")
	}
}
