package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
// allocations and RSS read from its own /metrics), then four scenarios back
// to back: direct (one backend, the machine's ceiling), new (no cookie),
// sticky (10,000 established cookies in rotation), sticky-redis-down. It
// prints a table and writes integration/results/<time>.json.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x ./integration/
//
// LATCH_BENCH_DURATION (default 5s) and LATCH_BENCH_CONCURRENCY (default 32)
// tune each scenario. LATCH_BENCH_PROFILE=dir writes latch's CPU and
// allocation profiles of each proxied scenario there (go tool pprof
// dir/sticky.cpu.pprof).
func BenchmarkLoad(b *testing.B) {
	duration := envDuration("LATCH_BENCH_DURATION", 5*time.Second)
	conc := envInt("LATCH_BENCH_CONCURRENCY", 32)
	profileDir := os.Getenv("LATCH_BENCH_PROFILE")
	c := harness.StartConsul(b)
	redis := harness.StartRedis(b)
	var direct string
	for i := 1; i <= 4; i++ {
		be := harness.StartBackend(b, c, fmt.Sprintf("web-%d", i), "web", time.Second)
		if direct == "" {
			direct = "http://" + be.Addr + "/"
		}
	}
	port, adminPort := harness.FreePort(b), harness.FreePort(b)
	harness.StartProcess(b, harness.Binaries(b)+"/latch", "-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort), "-consul", c.HTTPAddr, "-service", "web",
		"-redis", redis.URL, "-cookie-secret", "bench-secret-0123456789abcdef", "-log-level", "warn",
		"-pprof", strconv.FormatBool(profileDir != ""))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	waitPassing(b, admin, "web", 4)
	seenAllB(b, url, "web-1", "web-2", "web-3", "web-4")

	// 10,000 established sessions.
	cookies := make([]string, 10_000)
	for i := range cookies {
		resp, err := http.Get(url)
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
		loadgen.Result `json:"result"`
		RatioToDirect  float64 `json:"ratio_to_direct"`
		RedisPerReq    float64 `json:"redis_commands_per_request"`
		AllocsPerReq   float64 `json:"allocs_per_request"`
		RSSBytes       int64   `json:"latch_rss_bytes"`
	}
	var rows []row
	ctx := context.Background()
	run := func(name, target string, ck []string, redisUp bool) {
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
		allocs0 := scrape(b, admin, "go_memstats_mallocs_total")
		var profiles sync.WaitGroup
		if profileDir != "" && name != "direct" {
			// The loadgen warms up first: profile the measured part.
			secs := strconv.Itoa(max(int(duration/time.Second)-1, 1))
			for kind, path := range map[string]string{"cpu": "profile", "allocs": "allocs"} {
				profiles.Go(func() {
					time.Sleep(time.Second)
					fetchProfile(b, admin+"/debug/pprof/"+path+"?seconds="+secs,
						filepath.Join(profileDir, name+"."+kind+".pprof"))
				})
			}
		}
		res, err := loadgen.Run(ctx, loadgen.Options{URL: target, Concurrency: conc, Duration: duration, Cookies: ck})
		if err != nil {
			b.Fatal(err)
		}
		profiles.Wait()
		r := row{Scenario: name, Result: res, RSSBytes: int64(scrape(b, admin, "process_resident_memory_bytes"))}
		if res.Requests > 0 {
			if name != "direct" {
				r.AllocsPerReq = (scrape(b, admin, "go_memstats_mallocs_total") - allocs0) / float64(res.Requests)
			}
			if redisUp {
				r.RedisPerReq = float64(totalCommands(redis.CommandCount(b))-cmds0) / float64(res.Requests)
			}
		}
		rows = append(rows, r)
	}
	run("direct", direct, nil, true)
	run("new", url, nil, true)
	run("sticky", url, cookies, true)
	redis.Stop(b)
	run("sticky-redis-down", url, cookies, false)
	redis.Start(b)

	var out strings.Builder
	fmt.Fprintf(&out, "\n%-18s %9s %9s %9s %9s %7s %7s %10s %8s %8s\n", "scenario", "req/s", "p50", "p99", "p99.9",
		"ratio", "errors", "redis/req", "allocs", "rss MiB")
	for i := range rows {
		r := &rows[i]
		r.RatioToDirect = r.RPS / rows[0].RPS
		fmt.Fprintf(&out, "%-18s %9.0f %9s %9s %9s %7.2f %7d %10.3f %8.1f %8.1f\n", r.Scenario, r.RPS,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond),
			r.RatioToDirect, r.Errors, r.RedisPerReq, r.AllocsPerReq, float64(r.RSSBytes)/(1<<20))
	}
	b.Log(out.String())
	fmt.Print(out.String())
	dir := filepath.Join(harness.RepoRoot(), "integration", "results")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		data, _ := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "concurrency": conc,
			"duration": duration.String(), "scenarios": rows}, "", "  ")
		path := filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+".json")
		if err := os.WriteFile(path, data, 0o644); err == nil {
			fmt.Println("results:", path)
		}
	}
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
