package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/integration/loadgen"
)

// BenchmarkLoad is the end-to-end load run of `make bench`: a real Consul
// agent, a real Redis, 4 demo-backend processes and a latch process (its
// allocations and RSS read from its own /metrics), then the scenarios back
// to back:
//
//   - direct: one backend, no latch — the machine's ceiling;
//   - direct-4: the 4 backends in rotation, no latch — the ceiling when the
//     load is spread over 4 processes, as latch spreads it;
//   - new: no cookie, every request balanced and pinned;
//   - sticky: 10,000 established cookies in rotation;
//   - sticky@half, direct@half: open-loop at half of sticky's throughput,
//     through latch and straight to the backends: the p99 latch adds;
//   - sticky-redis-down: sticky with Redis stopped;
//   - haproxy new, haproxy sticky, haproxy sticky@half: when Debian's
//     haproxy is installed, the same scenarios through HAProxy (cookie
//     insert, round robin) — the bar latch is measured against.
//
// It prints a table and writes integration/results/<time>.json.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x ./integration/
//
// LATCH_BENCH_DURATION (default 5s) and LATCH_BENCH_CONCURRENCY (default 32)
// tune each scenario. LATCH_BENCH_BASELINE=path/to/latch runs the proxied
// scenarios a second time, right after, against that binary (say, main's
// before a change): a before/after in one run on the same machine.
// LATCH_BENCH_TOOL=wrk drives the closed-loop one-URL scenarios with
// Debian's wrk instead of loadgen (direct-4 and the open-loop ones stay on
// loadgen; the table's last column says which ran what).
// LATCH_BENCH_PROFILE=dir writes latch's CPU and allocation profiles of
// each proxied scenario there (go tool pprof dir/sticky.cpu.pprof).
func BenchmarkLoad(b *testing.B) {
	duration := envDuration("LATCH_BENCH_DURATION", 5*time.Second)
	conc := envInt("LATCH_BENCH_CONCURRENCY", 32)
	profileDir := os.Getenv("LATCH_BENCH_PROFILE")
	baseline := os.Getenv("LATCH_BENCH_BASELINE")
	useWrk := false
	switch tool := os.Getenv("LATCH_BENCH_TOOL"); tool {
	case "", "loadgen":
	case "wrk":
		if !loadgen.WrkAvailable() {
			b.Fatal("LATCH_BENCH_TOOL=wrk: wrk is not on PATH (apt-get install wrk)")
		}
		useWrk = true
	default:
		b.Fatalf("LATCH_BENCH_TOOL=%q: want loadgen or wrk", tool)
	}
	c := harness.StartConsul(b)
	redis := harness.StartRedis(b)
	var backends []string
	for i := 1; i <= 4; i++ {
		be := harness.StartBackend(b, c, fmt.Sprintf("web-%d", i), "web", time.Second)
		backends = append(backends, "http://"+be.Addr+"/")
	}
	type latch struct{ url, admin string }
	start := func(bin string) latch {
		port, adminPort := harness.FreePort(b), harness.FreePort(b)
		harness.StartProcess(b, bin, "-listen", fmt.Sprintf("127.0.0.1:%d", port),
			"-admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort), "-consul", c.HTTPAddr, "-service", "web",
			"-redis", redis.URL, "-cookie-secret", "bench-secret-0123456789abcdef",
			"-pprof", strconv.FormatBool(profileDir != "")) // the access log on, as by default (to a file)
		l := latch{fmt.Sprintf("http://127.0.0.1:%d/", port), fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
		waitPassing(b, l.admin, "web", 4)
		seenAllB(b, l.url, "web-1", "web-2", "web-3", "web-4")
		return l
	}
	cur := start(harness.Binaries(b) + "/latch")
	var base latch
	if baseline != "" {
		base = start(baseline)
	}

	// 10,000 established sessions (both latch processes share Redis and
	// the cookie secret, so they serve the same sessions).
	cookies := make([]string, 10_000)
	for i := range cookies {
		resp, err := http.Get(cur.url)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "latch" {
				cookies[i] = "latch=" + ck.Value
			}
		}
	}

	type row struct {
		Scenario       string `json:"scenario"`
		Tool           string `json:"tool"` // loadgen or wrk
		loadgen.Result `json:"result"`
		RatioToDirect  float64 `json:"ratio_to_direct"`
		RedisPerReq    float64 `json:"redis_commands_per_request"`
		AllocsPerReq   float64 `json:"allocs_per_request"`
		RSSBytes       int64   `json:"latch_rss_bytes"`
	}
	var rows []row
	ctx := context.Background()
	// run runs one scenario; l is the latch process under test (zero: none).
	run := func(name string, l latch, o loadgen.Options, redisUp bool) row {
		var cmds0 int64
		if redisUp {
			// Let the previous scenario's background work (TTL refreshes,
			// session counts) finish, so it is not billed to this one.
			prev := int64(-1)
			harness.WaitFor(b, 30*time.Second, "Redis traffic to settle", func() bool {
				time.Sleep(300 * time.Millisecond)
				n := totalCommands(redis.CommandCount(b))
				settled := n == prev
				prev = n
				return settled
			})
			cmds0 = prev
		}
		var allocs0 float64
		if l.admin != "" {
			allocs0 = scrape(b, l.admin, "go_memstats_mallocs_total")
		}
		var profiles sync.WaitGroup
		if profileDir != "" && l.admin != "" {
			// The loadgen warms up first: profile the measured part.
			secs := strconv.Itoa(max(int(duration/time.Second)-1, 1))
			for kind, path := range map[string]string{"cpu": "profile", "allocs": "allocs"} {
				profiles.Go(func() {
					time.Sleep(time.Second)
					fetchProfile(b, l.admin+"/debug/pprof/"+path+"?seconds="+secs,
						filepath.Join(profileDir, strings.ReplaceAll(name, " ", "-")+"."+kind+".pprof"))
				})
			}
		}
		o.Concurrency, o.Duration = conc, duration
		tool, drive := "loadgen", loadgen.Run
		if useWrk && o.Rate == 0 && len(o.URLs) == 0 { // wrk: one URL, closed loop
			tool, drive = "wrk", loadgen.RunWrk
		}
		res, err := drive(ctx, o)
		if err != nil {
			b.Fatal(err)
		}
		profiles.Wait()
		r := row{Scenario: name, Tool: tool, Result: res}
		// Warmup requests count too: the counters ran through them.
		if sent := float64(res.Requests + res.Warmup); sent > 0 {
			if l.admin != "" {
				r.AllocsPerReq = (scrape(b, l.admin, "go_memstats_mallocs_total") - allocs0) / sent
				r.RSSBytes = int64(scrape(b, l.admin, "process_resident_memory_bytes"))
			}
			if redisUp {
				r.RedisPerReq = float64(totalCommands(redis.CommandCount(b))-cmds0) / sent
			}
		}
		rows = append(rows, r)
		return r
	}
	// proxied runs a scenario on latch, then on the baseline when there is one.
	proxied := func(name string, o loadgen.Options, redisUp bool) row {
		o.URL = cur.url
		r := run(name, cur, o, redisUp)
		if baseline != "" {
			o.URL = base.url
			run(name+" (baseline)", base, o, redisUp)
		}
		return r
	}
	run("direct", latch{}, loadgen.Options{URL: backends[0]}, true)
	run("direct-4", latch{}, loadgen.Options{URLs: backends}, true)
	proxied("new", loadgen.Options{}, true)
	// Every cookie once through each latch first: each has then cached the
	// pins (a replica new to a session reads its pin and refreshes its TTL
	// once), as replicas that have run for a while have.
	for _, l := range []latch{cur, base} {
		if l.url == "" {
			continue
		}
		if _, err := loadgen.Run(ctx, loadgen.Options{URL: l.url, Cookies: cookies, Concurrency: conc,
			MaxRequests: int64(len(cookies)), Duration: time.Minute, Warmup: -1}); err != nil {
			b.Fatal(err)
		}
	}
	sticky := proxied("sticky", loadgen.Options{Cookies: cookies}, true)
	half := sticky.RPS / 2
	proxied("sticky@half", loadgen.Options{Cookies: cookies, Rate: half}, true)
	run("direct@half", latch{}, loadgen.Options{URLs: backends, Rate: half}, true)
	if url, cookies, ok := startHAProxy(b, backends); ok {
		run("haproxy new", latch{}, loadgen.Options{URL: url}, true)
		run("haproxy sticky", latch{}, loadgen.Options{URL: url, Cookies: cookies}, true)
		run("haproxy sticky@half", latch{}, loadgen.Options{URL: url, Cookies: cookies, Rate: half}, true)
	}
	redis.Stop(b)
	proxied("sticky-redis-down", loadgen.Options{Cookies: cookies}, false)
	redis.Start(b)

	var out strings.Builder
	fmt.Fprintf(&out, "\n%-30s %9s %9s %9s %9s %7s %7s %10s %8s %8s %8s\n", "scenario", "req/s", "p50", "p99", "p99.9",
		"ratio", "errors", "redis/req", "allocs", "rss MiB", "tool")
	p99 := map[string]time.Duration{}
	for i := range rows {
		r := &rows[i]
		r.RatioToDirect = r.RPS / rows[0].RPS
		p99[r.Scenario] = r.P99
		fmt.Fprintf(&out, "%-30s %9.0f %9s %9s %9s %7.2f %7d %10.3f %8.1f %8.1f %8s\n", r.Scenario, r.RPS,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond),
			r.RatioToDirect, r.Errors, r.RedisPerReq, r.AllocsPerReq, float64(r.RSSBytes)/(1<<20), r.Tool)
	}
	added := p99["sticky@half"] - p99["direct@half"]
	fmt.Fprintf(&out, "p99 latch adds at half of sticky's peak (%.0f req/s): %s\n", half, added.Round(time.Microsecond))
	if baseline != "" {
		fmt.Fprintf(&out, "p99 the baseline adds: %s\n", (p99["sticky@half (baseline)"] - p99["direct@half"]).Round(time.Microsecond))
	}
	if hp, ok := p99["haproxy sticky@half"]; ok {
		fmt.Fprintf(&out, "p99 HAProxy adds at the same rate: %s\n", (hp - p99["direct@half"]).Round(time.Microsecond))
	}
	b.Log(out.String())
	fmt.Print(out.String())
	dir := filepath.Join(harness.RepoRoot(), "integration", "results")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		data, _ := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "concurrency": conc,
			"duration": duration.String(), "baseline": baseline, "p99_added_at_half_load_ns": added,
			"scenarios": rows}, "", "  ")
		path := filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+".json")
		if err := os.WriteFile(path, data, 0o644); err == nil {
			fmt.Println("results:", path)
		}
	}
}

// startHAProxy runs Debian's haproxy, when installed, as the bar to
// compare with: round robin over the same backends, stickiness by an
// inserted cookie (its "cookie insert indirect"), keep-alive to backends,
// one thread (its best on 2 shared cores), no logging. The cookies it
// returns name each backend in turn.
func startHAProxy(b *testing.B, backends []string) (url string, cookies []string, ok bool) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return "", nil, false
	}
	port := harness.FreePort(b)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:%d
    default_backend web
backend web
    balance roundrobin
    cookie SRV insert indirect nocache
`, port)
	for i, be := range backends {
		fmt.Fprintf(&cfg, "    server web-%d %s cookie w%d\n", i+1, strings.TrimSuffix(strings.TrimPrefix(be, "http://"), "/"), i+1)
		cookies = append(cookies, fmt.Sprintf("SRV=w%d", i+1))
	}
	path := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	harness.StartProcess(b, bin, "-db", "-f", path)
	url = fmt.Sprintf("http://127.0.0.1:%d/", port)
	harness.WaitFor(b, 10*time.Second, "haproxy to answer", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url, cookies, true
}

// fetchProfile saves a pprof profile from latch's admin listener.
func fetchProfile(b *testing.B, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		b.Error(err)
	}
}

func seenAllB(b *testing.B, url string, ids ...string) {
	seen := map[string]bool{}
	harness.WaitFor(b, 15*time.Second, "every backend in rotation", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		seen[resp.Header.Get("X-Backend-Id")] = true
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	})
}

func totalCommands(m map[string]int64) int64 {
	var n int64
	for cmd, c := range m {
		switch cmd {
		case "info", "ping", "hello", "client|setinfo", "client": // the benchmark's own reads and connection setup
			continue
		}
		n += c
	}
	return n
}

// scrape reads one unlabelled sample from latch's /metrics.
func scrape(b *testing.B, admin, name string) float64 {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	b.Fatalf("metric %s not exposed", name)
	return 0
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
