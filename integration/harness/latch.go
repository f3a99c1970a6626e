package harness

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway"
	"github.com/latchgw/latch/gateway/config"
)

// Latch is a latch gateway running in the test process, wired by
// gateway.Assemble exactly as cmd/latch wires it.
type Latch struct {
	URL, AdminURL string
	Gateway       *gateway.Gateway

	cfg    *config.Compiled
	cancel context.CancelFunc
	done   chan error
	close  func()
	pub    string
	admin  string
	plain  string // the plain-HTTP (redirect) listener's address; "" = none
}

// CookieSecret signs the cookies of every latch the harness starts.
const CookieSecret = "integration-test-secret-0123456789"

// LatchConfig is a config for one service routed at /, on Consul at
// consulAddr, with sessions in Redis at redisURL ("" = memory).
func LatchConfig(consulAddr, redisURL, service string) config.Config {
	cfg := config.Config{
		Listen: "127.0.0.1:0", Consul: config.Consul{Address: consulAddr},
		Redis:  config.Redis{URL: redisURL},
		Cookie: config.Cookie{Secrets: []string{CookieSecret}},
		Routes: []config.Route{{Service: service}},
	}
	if os.Getenv("LATCH_TEST_LOG") == "" {
		cfg.Log.Access = config.Set(false)
	}
	cfg.Consul.RoutesFromTags = config.Set(false)
	cfg.Server.Implementation = os.Getenv("LATCH_TEST_SERVER") // "net/http": the suite on Go's server (default: gateway/h1)
	return cfg
}

// StartLatch validates cfg, starts latch on free loopback ports and waits
// until it is ready. It stops when the test ends.
func StartLatch(t testing.TB, cfg config.Config) *Latch {
	t.Helper()
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatalf("latch config: %v", err)
	}
	l := &Latch{cfg: cc, pub: "127.0.0.1:0", admin: "127.0.0.1:0"}
	l.Start(t)
	t.Cleanup(func() { l.Stop(t) })
	return l
}

// Start (re)starts the gateway; a restart reuses the same ports.
func (l *Latch) Start(t testing.TB) {
	t.Helper()
	l.Launch(t)
	WaitFor(t, 15*time.Second, "latch ready", func() bool {
		resp, err := http.Get(l.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// StartLatchOn is StartLatch on the public address pub and, when plain is
// not empty, a plain-HTTP listener there (tls.acme's HTTP-01 challenges
// and the redirect to HTTPS).
func StartLatchOn(t testing.TB, cfg config.Config, pub, plain string) *Latch {
	t.Helper()
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatalf("latch config: %v", err)
	}
	l := &Latch{cfg: cc, pub: pub, admin: "127.0.0.1:0", plain: plain}
	l.Start(t)
	t.Cleanup(func() { l.Stop(t) })
	return l
}

// StartLatchUnready is StartLatch without waiting for /readyz.
func StartLatchUnready(t testing.TB, cfg config.Config) *Latch {
	t.Helper()
	cc, err := cfg.Compile()
	if err != nil {
		t.Fatalf("latch config: %v", err)
	}
	l := &Latch{cfg: cc, pub: "127.0.0.1:0", admin: "127.0.0.1:0"}
	l.Launch(t)
	t.Cleanup(func() { l.Stop(t) })
	return l
}

// Launch (re)starts the gateway without waiting for it to be ready.
func (l *Latch) Launch(t testing.TB) {
	t.Helper()
	logw := io.Discard
	if os.Getenv("LATCH_TEST_LOG") != "" {
		logw = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, closeFn, err := gateway.Assemble(l.cfg, log, nil, nil)
	if err != nil {
		t.Fatalf("assembling latch: %v", err)
	}
	ls := gateway.Listeners{Public: listen(t, l.pub), Admin: listen(t, l.admin)}
	if l.plain != "" {
		ls.Redirect = listen(t, l.plain)
	}
	l.pub, l.admin = ls.Public.Addr().String(), ls.Admin.Addr().String()
	scheme := "http://"
	if l.cfg.Config().TLS.Enabled() {
		scheme = "https://"
	}
	l.URL, l.AdminURL, l.Gateway, l.close = scheme+l.pub, "http://"+l.admin, g, closeFn
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- g.RunOn(ctx, ls) }()
}

// listen binds addr, retrying briefly: a restarted gateway takes back its
// port the moment the old listener is closed.
func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var err error
	for range 100 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen %s: %v", addr, err)
	return nil
}

// Stop shuts the gateway down gracefully. Idempotent.
func (l *Latch) Stop(t testing.TB) {
	t.Helper()
	if l.cancel == nil {
		return
	}
	l.cancel()
	if err := <-l.done; err != nil {
		t.Errorf("latch Run: %v", err)
	}
	l.close()
	l.cancel = nil
}

// Client is an HTTP client with its own cookie jar: one browser.
func Client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/latch and cmd/demo-backend once per test binary and
// returns the folder holding them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "latch-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/latch", "./cmd/demo-backend")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("building binaries: %v", buildErr)
	}
	return binDir
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// Process is a program the test started; Kill and Stop act on its PID only.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	Log  string
}

// StartProcess runs bin with args, logging to a file in the test's temp dir.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, nil, bin, args...)
}

// StartProcessEnv is StartProcess with env added to the test's environment.
func StartProcessEnv(t testing.TB, env []string, bin string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(bin)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), Log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.Kill() })
	return p
}

// PID is the process's id (for /proc readings).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits (SIGKILL after 10s).
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill sends SIGKILL to the process and to what it started (its process
// group, made for it at start: nginx's workers outlive a killed master and
// keep its port), and waits.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
