package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk send the cookies listed one per line in the file
// named by the first script argument (none: no cookie, every request a new
// session), each thread from its own offset, and print its summary on one
// line for RunWrk to read. wrk's latencies are in microseconds.
const wrkScript = `
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 7919)
end

-- Requests are formatted once, in init: request() only picks the next.
local reqs = {}
local n = 0
function init(args)
  if args[1] then
    for line in io.lines(args[1]) do
      if #line > 0 then reqs[#reqs + 1] = wrk.format("GET", wrk.path, {Cookie = line}) end
    end
  end
  if #reqs == 0 then reqs[1] = wrk.format("GET", wrk.path) end
  n = (offset or 0) % #reqs
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("loadgen-wrk requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`

// WrkAvailable reports whether wrk (Debian's package) is on PATH.
func WrkAvailable() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}

// RunWrk runs a closed-loop scenario with wrk instead of Go clients: the
// other supported load tool, for a check that the figures are not the Go
// client's. It takes URL, Cookies, Concurrency and Duration (two threads,
// one per core here, or one for an odd concurrency); URLs, Rate and
// MaxRequests need Run. wrk has no warm-up, and counts as errors socket
// errors, timeouts and statuses of 400 and up (Run: anything but 2xx).
func RunWrk(ctx context.Context, o Options) (Result, error) {
	if len(o.URLs) > 0 || o.Rate > 0 || o.MaxRequests > 0 {
		return Result{}, errors.New("loadgen: wrk runs one URL, closed-loop, bounded by time: use Run for URLs, Rate or MaxRequests")
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if err := loopbackOnly(u.Hostname()); err != nil {
		return Result{}, err
	}
	o = o.withDefaults()
	dir, err := os.MkdirTemp("", "loadgen-wrk")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "latch.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return Result{}, err
	}
	threads := 2 // one per core here; wrk gives each thread connections/threads
	if o.Concurrency%2 != 0 {
		threads = 1
	}
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(o.Concurrency),
		"-d", strconv.Itoa(max(1, int(o.Duration.Round(time.Second)/time.Second))) + "s",
		"--timeout", "10s", "-s", script, o.URL}
	if len(o.Cookies) > 0 {
		cookies := filepath.Join(dir, "cookies")
		if err := os.WriteFile(cookies, []byte(strings.Join(o.Cookies, "\n")+"\n"), 0o644); err != nil {
			return Result{}, err
		}
		args = append(args, cookies) // the script's args[1]
	}
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: wrk: %v: %s", err, out)
	}
	return parseWrk(out)
}

// parseWrk reads the summary line wrkScript prints.
func parseWrk(out []byte) (Result, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "loadgen-wrk ")
		if !ok {
			continue
		}
		v := map[string]int64{}
		for _, kv := range strings.Fields(line) {
			k, s, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return Result{}, fmt.Errorf("loadgen: wrk summary %q: %v", line, err)
			}
			v[k] = n
		}
		for _, k := range []string{"requests", "duration_us", "errors", "p50_us", "p99_us", "p999_us"} {
			if _, ok := v[k]; !ok {
				return Result{}, fmt.Errorf("loadgen: wrk summary %q: no %s", line, k)
			}
		}
		r := Result{Requests: v["requests"], Errors: v["errors"], Elapsed: time.Duration(v["duration_us"]) * time.Microsecond,
			P50: time.Duration(v["p50_us"]) * time.Microsecond, P99: time.Duration(v["p99_us"]) * time.Microsecond,
			P999: time.Duration(v["p999_us"]) * time.Microsecond}
		if r.Elapsed > 0 {
			r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
		}
		return r, nil
	}
	return Result{}, fmt.Errorf("loadgen: no summary in wrk's output: %s", out)
}

// loopbackOnly refuses any target but this machine.
func loopbackOnly(host string) error {
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return errors.New("loadgen: only loopback targets")
	}
	return nil
}
