package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/latchgw/latch/integration/procstat"
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
//   - haproxy new, haproxy sticky, haproxy sticky@half: Debian's haproxy
//     at its packaged defaults (cookie insert, round robin) — the bar;
//   - nginx new, nginx sticky, nginx sticky@half: Debian's nginx with the
//     usual cookie-hash recipe, when installed — a second bar;
//   - sticky tls, haproxy sticky tls: sticky over HTTPS (HTTP/1.1 keep-alive,
//     TLS sessions resumed on reconnect) through a latch serving a
//     certificate and through HAProxy serving the same one (on loadgen);
//   - sticky-redis-down: sticky with Redis stopped;
//   - idle: 10,000 keep-alive connections left idle after one request
//     each, on latch and each bar, each in a fresh process started for it:
//     RSS before, with them open, 30 s and 60 s after they close, and how long RSS
//     took to come back within 20% of where it started.
//
// Every proxy runs in this process session (no setsid), so the kernel's
// autogroup scheduling gives them all the same CPU share. Per scenario the
// table shows req/s, the ratios to direct and to HAProxy's same scenario,
// latency percentiles, and the CPU seconds per 1,000 requests and the
// context switches per request of the proxy under test (all its threads
// and processes, from /proc, sampled before and after the scenario). It
// writes integration/results/<time>.json.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x ./integration/
//
// Closed-loop one-URL scenarios run on Debian's wrk (2 threads); direct-4
// and the open-loop @half rows on loadgen (the table's last column says
// which ran what). LATCH_BENCH_DURATION (default 5s) and
// LATCH_BENCH_CONCURRENCY (default 64) tune each scenario;
// LATCH_BENCH_TOOL=loadgen runs everything on loadgen.
// LATCH_BENCH_BASELINE=path/to/latch runs the proxied scenarios a second
// time, right after, against that binary (say, main's before a change): a
// before/after in one run on the same machine. LATCH_BENCH_PROFILE=dir
// writes latch's CPU and allocation profiles of each proxied scenario
// there (go tool pprof dir/sticky.cpu.pprof). LATCH_BENCH_IDLE sets the
// idle connections (default 10000; 0: skip; LATCH_BENCH_ONLY=idle runs
// only the idle measurement after the startup). LATCH_BENCH_SERVER=h1 serves
// the latch under test with gateway/h1 (server.implementation; the
// baseline keeps its default): LATCH_BENCH_BASELINE=bin/latch with it
// compares the two servers in one run; LATCH_BENCH_BASELINE_SERVER sets
// the baseline's. LATCH_BENCH_POLICY=least_sessions sets the policy of the
// latch under test (the baseline keeps the default: with
// LATCH_BENCH_BASELINE=bin/latch, one run compares the two policies).
// LATCH_BENCH_ONLY=direct,sticky,haproxy sticky runs only
// the scenarios named (comma-separated; a bar runs when one of its
// scenarios is named; sticky@half needs sticky; "sticky tls,haproxy
// sticky tls": the TLS rows).
func BenchmarkLoad(b *testing.B) {
	duration := envDuration("LATCH_BENCH_DURATION", 5*time.Second)
	conc := envInt("LATCH_BENCH_CONCURRENCY", 64)
	profileDir := os.Getenv("LATCH_BENCH_PROFILE")
	baseline := os.Getenv("LATCH_BENCH_BASELINE")
	only := map[string]bool{}
	for _, name := range strings.Split(os.Getenv("LATCH_BENCH_ONLY"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			only[name] = true
		}
	}
	wanted := func(name string) bool { return len(only) == 0 || only[name] }
	idle := 10000
	if v, err := strconv.Atoi(os.Getenv("LATCH_BENCH_IDLE")); err == nil && v >= 0 {
		idle = v
	}
	useWrk := true
	switch tool := os.Getenv("LATCH_BENCH_TOOL"); tool {
	case "", "wrk":
		if !loadgen.WrkAvailable() {
			b.Fatal("wrk is not on PATH: `make bench-tools` installs it (or LATCH_BENCH_TOOL=loadgen)")
		}
	case "loadgen":
		useWrk = false
	default:
		b.Fatalf("LATCH_BENCH_TOOL=%q: want wrk or loadgen", tool)
	}
	if idle > 0 {
		if limit, ok := raiseFileLimit(idle); !ok {
			b.Fatalf("open-file limit %d is too low for %d idle connections (ulimit -n; or LATCH_BENCH_IDLE)", limit, idle)
		}
	}
	c := harness.StartConsul(b)
	redis := harness.StartRedis(b)
	var backends []string
	for i := 1; i <= 4; i++ {
		be := harness.StartBackend(b, c, fmt.Sprintf("web-%d", i), "web", time.Second)
		backends = append(backends, "http://"+be.Addr+"/")
	}
	type latch struct {
		url, admin string
		proc       *harness.Process
	}
	cert := newBenchCert(b)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cert.client}}
	// start runs a latch process; policy, if set, is its routes' policy;
	// tlsOn serves cert (the TLS row).
	start := func(bin, server, policy string, tlsOn bool) latch {
		port, adminPort := harness.FreePort(b), harness.FreePort(b)
		args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", port),
			"-admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort), "-consul", c.HTTPAddr, "-service", "web",
			"-redis", redis.URL, "-cookie-secret", "bench-secret-0123456789abcdef",
			"-pprof", strconv.FormatBool(profileDir != "")} // the access log on, as by default (to a file)
		yaml, scheme := "", "http"
		if server != "" {
			yaml = "server:\n  implementation: " + server + "\n"
		}
		if policy != "" {
			yaml += "defaults:\n  policy: [" + policy + "]\n"
		}
		if tlsOn {
			yaml, scheme = yaml+cert.yaml(), "https"
		}
		if yaml != "" {
			path := filepath.Join(b.TempDir(), "latch.yaml")
			if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
				b.Fatal(err)
			}
			args = append(args, "-config", path)
		}
		p := harness.StartProcess(b, bin, args...)
		l := latch{fmt.Sprintf("%s://127.0.0.1:%d/", scheme, port), fmt.Sprintf("http://127.0.0.1:%d", adminPort), p}
		waitPassing(b, l.admin, "web", 4)
		seenAllB(b, client, l.url, "web-1", "web-2", "web-3", "web-4")
		return l
	}
	cur := start(harness.Binaries(b)+"/latch", os.Getenv("LATCH_BENCH_SERVER"), os.Getenv("LATCH_BENCH_POLICY"), false)
	var base latch
	if baseline != "" {
		base = start(baseline, os.Getenv("LATCH_BENCH_BASELINE_SERVER"), "", false)
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

	var rows []benchRow
	ctx := context.Background()
	// run runs one scenario; l is the latch process under test (zero: none)
	// and proc the process billed for CPU (nil: none).
	run := func(name, kind string, l latch, proc *harness.Process, o loadgen.Options, redisUp bool) benchRow {
		if !wanted(strings.TrimSuffix(name, " (baseline)")) {
			return benchRow{}
		}
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
		if useWrk && o.Rate == 0 && len(o.URLs) == 0 && o.TLS == nil { // wrk: one URL, closed loop, no TLS
			tool, drive = "wrk", loadgen.RunWrk
		}
		var st0 procstat.Stat
		if proc != nil {
			st0 = readStat(b, proc)
		}
		res, err := drive(ctx, o)
		if err != nil {
			b.Fatal(err)
		}
		r := benchRow{Scenario: name, Kind: kind, Tool: tool, Result: res}
		// Warmup requests count too: the counters ran through them.
		if sent := float64(res.Requests + res.Warmup); sent > 0 {
			if proc != nil {
				d := readStat(b, proc).Sub(st0)
				r.CPUPer1k = d.CPU.Seconds() / sent * 1000
				r.SwitchesPerReq = float64(d.CtxSwitches) / sent
			}
			if l.admin != "" {
				r.AllocsPerReq = (scrape(b, l.admin, "go_memstats_mallocs_total") - allocs0) / sent
			}
			if redisUp {
				r.RedisPerReq = float64(totalCommands(redis.CommandCount(b))-cmds0) / sent
			}
		}
		if proc != nil {
			r.RSSBytes = readStat(b, proc).RSS
		}
		profiles.Wait()
		rows = append(rows, r)
		return r
	}
	// proxied runs a scenario on latch, then on the baseline when there is one.
	proxied := func(name, kind string, o loadgen.Options, redisUp bool) benchRow {
		o.URL = cur.url
		r := run(name, kind, cur, cur.proc, o, redisUp)
		if baseline != "" {
			o.URL = base.url
			run(name+" (baseline)", kind, base, base.proc, o, redisUp)
		}
		return r
	}
	run("direct", "direct", latch{}, nil, loadgen.Options{URL: backends[0]}, true)
	run("direct-4", "", latch{}, nil, loadgen.Options{URLs: backends}, true)
	proxied("new", "new", loadgen.Options{}, true)
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
	sticky := proxied("sticky", "sticky", loadgen.Options{Cookies: cookies}, true)
	half := sticky.RPS / 2
	proxied("sticky@half", "", loadgen.Options{Cookies: cookies, Rate: half}, true)
	run("direct@half", "", latch{}, nil, loadgen.Options{URLs: backends, Rate: half}, true)
	var bars []bar
	barWanted := func(name string) bool {
		return wanted(name+" new") || wanted(name+" sticky") || wanted(name+" sticky@half")
	}
	if barWanted("haproxy") {
		if hp, ok := startHAProxy(b, backends); ok {
			bars = append(bars, hp)
		} else {
			fmt.Println("haproxy is not installed (`make bench-tools`): no HAProxy bar")
		}
	}
	if barWanted("nginx") {
		if ng, ok := startNginx(b, backends); ok {
			bars = append(bars, ng)
		}
	}
	for _, br := range bars {
		run(br.name+" new", "new", latch{}, br.proc, loadgen.Options{URL: br.url}, true)
		run(br.name+" sticky", "sticky", latch{}, br.proc, loadgen.Options{URL: br.url, Cookies: br.cookies}, true)
		run(br.name+" sticky@half", "", latch{}, br.proc, loadgen.Options{URL: br.url, Cookies: br.cookies, Rate: half}, true)
	}
	// TLS: sticky over HTTPS (HTTP/1.1, keep-alive, TLS sessions resumed on
	// reconnect) through a second latch process serving cert, and through
	// HAProxy with the same certificate: what terminating TLS costs.
	if wanted("sticky tls") {
		tl := start(harness.Binaries(b)+"/latch", os.Getenv("LATCH_BENCH_SERVER"), os.Getenv("LATCH_BENCH_POLICY"), true)
		run("sticky tls", "sticky tls", tl, tl.proc, loadgen.Options{URL: tl.url, Cookies: cookies, TLS: cert.client}, true)
		tl.proc.Stop()
	}
	if wanted("haproxy sticky tls") {
		if hp, ok := startHAProxyOn(b, backends, cert.bundle); ok {
			seenAllB(b, client, hp.url, "web-1", "web-2", "web-3", "web-4")
			run("haproxy sticky tls", "sticky tls", latch{}, hp.proc, loadgen.Options{URL: hp.url, Cookies: hp.cookies, TLS: cert.client}, true)
		}
	}
	if wanted("sticky-redis-down") {
		redis.Stop(b)
		proxied("sticky-redis-down", "sticky", loadgen.Options{Cookies: cookies}, false)
		redis.Start(b)
	}

	// Idle memory, each proxy in a fresh process (one started for it, its
	// heap not grown by the scenarios before): what a user's idle
	// keep-alive clients cost, and whether the memory comes back.
	var mem []idleMem
	if idle > 0 && wanted("idle") {
		cur.proc.Stop()
		if baseline != "" {
			base.proc.Stop()
		}
		fresh := start(harness.Binaries(b)+"/latch", os.Getenv("LATCH_BENCH_SERVER"), os.Getenv("LATCH_BENCH_POLICY"), false)
		mem = append(mem, measureIdle(b, "latch", fresh.url, cookies[0], fresh.proc, idle))
		fresh.proc.Stop()
		if baseline != "" {
			fresh := start(baseline, os.Getenv("LATCH_BENCH_BASELINE_SERVER"), "", false)
			mem = append(mem, measureIdle(b, "latch (baseline)", fresh.url, cookies[0], fresh.proc, idle))
			fresh.proc.Stop()
		}
		for _, br := range bars {
			br.proc.Stop()
		}
		for _, startBar := range []func(*testing.B, []string) (bar, bool){startHAProxy, startNginx} {
			br, ok := startBar(b, backends)
			if !ok {
				continue
			}
			m, err := tryIdle(b, br.name, br.url, br.cookies[0], br.proc, idle)
			br.proc.Stop()
			if ref, ok := errors.AsType[*idleRefused](err); ok && ref.Served > 100 {
				// HAProxy's default maxconn follows the open-file limit
				// (about 10,000 at 20,000): measure it again, in a fresh
				// process, at a count it takes.
				fmt.Printf("%v: measured again with %d connections\n", err, ref.Served-100)
				br, _ = startBar(b, backends)
				m, err = tryIdle(b, br.name, br.url, br.cookies[0], br.proc, ref.Served-100)
				br.proc.Stop()
			}
			if err != nil {
				b.Fatal(err)
			}
			mem = append(mem, m)
		}
	}

	out := benchTable(rows, mem, half, baseline != "")
	b.Log(out)
	fmt.Print(out)
	dir := filepath.Join(harness.RepoRoot(), "integration", "results")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		data, _ := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "concurrency": conc,
			"duration": duration.String(), "baseline": baseline, "scenarios": rows, "idle_connections": mem}, "", "  ")
		path := filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+".json")
		if err := os.WriteFile(path, data, 0o644); err == nil {
			fmt.Println("results:", path)
		}
	}
}
