package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is Debian's redis-server on a free loopback port, without
// persistence: a restart loses every key, as a crashed cache node would.
type Redis struct {
	Addr string // 127.0.0.1:port
	URL  string // redis://127.0.0.1:port/0

	// Args are added to the command line (replicaof, cluster mode...).
	Args []string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts redis-server and stops it when the test ends. It
// fails the test, never skips it, when redis-server is missing.
func StartRedis(t testing.TB) *Redis { t.Helper(); return StartRedisWith(t) }

// StartRedisWith is StartRedis with more command-line arguments.
func StartRedisWith(t testing.TB, args ...string) *Redis {
	t.Helper()
	port := FreePort(t)
	r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir(), Args: args}
	r.URL = "redis://" + r.Addr + "/0"
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

func redisBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	t.Fatal("redis-server not found: run `make tools` (Debian package redis-server)")
	return ""
}

// Start (re)starts the server on its port and waits for PING.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	if r.cmd != nil {
		t.Fatal("redis already running")
	}
	_, port, _ := strings.Cut(r.Addr, ":")
	log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(redisBinary(t), "--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--protected-mode", "no")
	cmd.Args = append(cmd.Args, r.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(r.done) }()
	c := r.Client(t)
	defer c.Close()
	WaitFor(t, 10*time.Second, "redis PING", func() bool {
		select {
		case <-r.done:
			t.Fatalf("redis-server exited; log: %s", filepath.Join(r.dir, "redis.log"))
		default:
		}
		return c.Ping(context.Background()).Err() == nil
	})
}

// Stop ends the server (SIGTERM, SIGKILL after 10s). Idempotent.
func (r *Redis) Stop(t testing.TB) { r.signal(t, syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would. Idempotent.
func (r *Redis) Kill(t testing.TB) { r.signal(t, syscall.SIGKILL) }

func (r *Redis) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// Client is a plain go-redis client for the server.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	return redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second})
}

// info returns the INFO section as key → value.
func (r *Redis) info(t testing.TB, section string) map[string]string {
	t.Helper()
	c := r.Client(t)
	defer c.Close()
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

// CommandCount is calls per command from INFO commandstats (the INFO
// calls themselves included; subtract or ignore "info").
func (r *Redis) CommandCount(t testing.TB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for k, v := range r.info(t, "commandstats") {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		out[name], _ = strconv.ParseInt(calls, 10, 64)
	}
	return out
}

// UsedMemory is INFO memory's used_memory in bytes.
func (r *Redis) UsedMemory(t testing.TB) int64 {
	t.Helper()
	n, _ := strconv.ParseInt(r.info(t, "memory")["used_memory"], 10, 64)
	return n
}
