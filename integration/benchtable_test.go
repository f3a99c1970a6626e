package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/integration/loadgen"
	"github.com/latchgw/latch/integration/procstat"
)

// The load run's table, and the helpers BenchmarkLoad reads its figures with.

// benchRow is one scenario's line in the table (and the JSON results).
type benchRow struct {
	Scenario       string `json:"scenario"`
	Kind           string `json:"-"`    // new, sticky, direct: what ratios compare it with ("": none)
	Tool           string `json:"tool"` // loadgen or wrk
	loadgen.Result `json:"result"`
	RatioToDirect  float64 `json:"ratio_to_direct"`
	RatioToHAProxy float64 `json:"ratio_to_haproxy,omitempty"`
	CPUPer1k       float64 `json:"cpu_seconds_per_1000_requests,omitempty"` // of the proxy under test
	SwitchesPerReq float64 `json:"context_switches_per_request,omitempty"`
	RedisPerReq    float64 `json:"redis_commands_per_request"`
	AllocsPerReq   float64 `json:"allocs_per_request,omitempty"`
	RSSBytes       int64   `json:"rss_bytes,omitempty"` // of the proxy under test, after the scenario
}

// benchTable fills in the ratios and formats the table.
func benchTable(rows []benchRow, mem []idleMem, half float64, withBaseline bool) string {
	byName := map[string]benchRow{}
	for _, r := range rows {
		byName[r.Scenario] = r
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-28s %8s %7s %8s %8s %8s %8s %9s %8s %6s %9s %7s %7s %7s\n", "scenario", "req/s", "×direct",
		"×haproxy", "p50", "p99", "p99.9", "cpu s/1k", "csw/req", "errors", "redis/req", "allocs", "rss MiB", "tool")
	for i := range rows {
		r := &rows[i]
		if d := byName["direct"].RPS; d > 0 { // LATCH_BENCH_ONLY may have skipped it
			r.RatioToDirect = r.RPS / d
		}
		hp, ok := byName["haproxy "+r.Kind]
		ratio := "-"
		if ok && r.Kind != "" && r.Kind != "direct" {
			r.RatioToHAProxy = r.RPS / hp.RPS
			ratio = fmt.Sprintf("%.2f", r.RatioToHAProxy)
		}
		cpu, csw, allocs, rss := "-", "-", "-", "-"
		if r.CPUPer1k > 0 || r.SwitchesPerReq > 0 {
			cpu, csw = fmt.Sprintf("%.4f", r.CPUPer1k), fmt.Sprintf("%.2f", r.SwitchesPerReq)
			rss = fmt.Sprintf("%.1f", float64(r.RSSBytes)/(1<<20))
		}
		if r.AllocsPerReq > 0 {
			allocs = fmt.Sprintf("%.1f", r.AllocsPerReq)
		}
		fmt.Fprintf(&out, "%-28s %8.0f %7.2f %8s %8s %8s %8s %9s %8s %6d %9.3f %7s %7s %7s\n", r.Scenario, r.RPS,
			r.RatioToDirect, ratio, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
			r.P999.Round(time.Microsecond), cpu, csw, r.Errors, r.RedisPerReq, allocs, rss, r.Tool)
	}
	direct := byName["direct@half"].P99
	fmt.Fprintf(&out, "p99 added at half of latch's sticky peak (%.0f req/s): latch %s", half,
		(byName["sticky@half"].P99 - direct).Round(time.Microsecond))
	if withBaseline {
		fmt.Fprintf(&out, ", baseline %s", (byName["sticky@half (baseline)"].P99 - direct).Round(time.Microsecond))
	}
	for _, name := range []string{"haproxy", "nginx"} {
		if r, ok := byName[name+" sticky@half"]; ok {
			fmt.Fprintf(&out, ", %s %s", name, (r.P99 - direct).Round(time.Microsecond))
		}
	}
	out.WriteString("\n")
	if hp, ok := byName["haproxy sticky"]; ok && hp.CPUPer1k > 0 {
		fmt.Fprintf(&out, "CPU per request, sticky: latch %.2f× HAProxy's", byName["sticky"].CPUPer1k/hp.CPUPer1k)
		if bl, ok := byName["sticky (baseline)"]; ok && bl.CPUPer1k > 0 {
			fmt.Fprintf(&out, ", baseline %.2f×", bl.CPUPer1k/hp.CPUPer1k)
		}
		out.WriteString("\n")
	}
	if len(mem) > 0 {
		fmt.Fprintf(&out, "\n%-20s %7s %10s %10s %12s %14s %14s %12s\n", "idle connections", "conns", "rss before", "rss open",
			"per conn", "rss 30s closed", "rss 60s closed", "back ≤1.2×")
		for _, m := range mem {
			back := "no"
			if m.Back >= 0 {
				back = m.Back.Round(100 * time.Millisecond).String()
			}
			fmt.Fprintf(&out, "%-20s %7d %8.1f M %8.1f M %8.2f KiB %12.1f M %12.1f M %12s\n", m.Proxy, m.Conns, float64(m.Before)/(1<<20),
				float64(m.Open)/(1<<20), m.PerConn()/1024, float64(m.Closed)/(1<<20), float64(m.Late)/(1<<20), back)
		}
	}
	return out.String()
}

func readStat(b *testing.B, p *harness.Process) procstat.Stat {
	s, err := procstat.Read(p.PID())
	if err != nil {
		b.Fatal(err)
	}
	return s
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

func seenAllB(b *testing.B, client *http.Client, url string, ids ...string) {
	seen := map[string]bool{}
	harness.WaitFor(b, 15*time.Second, "every backend in rotation", func() bool {
		resp, err := client.Get(url)
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
