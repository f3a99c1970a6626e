// Package harness starts the real parts integration tests run against: a
// Consul agent, a Redis server, demo backends and latch itself, each on free
// loopback ports, each stopped by the test that started it.
package harness

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul is a single-node Consul server agent. Unlike `consul agent -dev`
// it keeps its state in a data directory, so Restart brings back the
// registrations, as a production agent does after a restart.
type Consul struct {
	HTTPAddr string // 127.0.0.1:port
	// Token is the ACL token the harness's own client sends ("" = none).
	Token string

	node  string
	args  []string // the agent's role: -server -bootstrap-expect=1 by default
	also  string   // another address its HTTP API listens on ("": loopback only)
	dir   string
	ports [4]int // http, serf lan, serf wan, server
	cmd   *exec.Cmd
	done  chan struct{}
	log   *os.File
}

// StartConsul starts a Consul agent on free loopback ports and stops it when
// the test ends. It fails the test, never skips it, when consul is missing.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	c := newConsul(t, "latch-test", "-server", "-bootstrap-expect=1")
	c.Start(t)
	return c
}

// StartConsulAlso is StartConsul with the HTTP API also on addr (an
// address of Hosts, for latch replicas on other hosts), same port.
func StartConsulAlso(t testing.TB, addr string) *Consul {
	t.Helper()
	c := newConsul(t, "latch-test", "-server", "-bootstrap-expect=1")
	c.also = addr
	c.Start(t)
	return c
}

// newConsul makes an agent (not started) on free ports, stopped when the
// test ends.
func newConsul(t testing.TB, node string, args ...string) *Consul {
	t.Helper()
	c := &Consul{dir: t.TempDir(), node: node, args: args}
	for i := range c.ports {
		c.ports[i] = FreePort(t)
	}
	c.HTTPAddr = "127.0.0.1:" + strconv.Itoa(c.ports[0])
	t.Cleanup(func() { c.Stop(t) })
	return c
}

// ConsulBinary finds consul on PATH or in the repository's .tools/bin.
func ConsulBinary(t testing.TB) string {
	t.Helper()
	return ToolBinary(t, "consul")
}

// ToolBinary finds a tool `make tools` installs (consul, pebble...) on PATH
// or in the repository's .tools/bin, failing the test when it is missing.
func ToolBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(RepoRoot(), ".tools", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("%s not found on PATH or in %s: run `make tools`", name, p)
	return ""
}

// RepoRoot is the repository's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Start (re)starts the agent on its ports and waits until it has a leader
// and its node is in the catalog.
func (c *Consul) Start(t testing.TB) {
	t.Helper()
	c.launch(t)
	c.waitReady(t, 30*time.Second)
}

// Wipe deletes the agent's data directory (the agent must be stopped): the
// next Start is a new agent on the same ports, as a -dev agent restarted
// or a replaced node would be.
func (c *Consul) Wipe(t testing.TB) {
	t.Helper()
	if c.cmd != nil {
		t.Fatal("wiping a running consul")
	}
	if err := os.RemoveAll(filepath.Join(c.dir, "data")); err != nil {
		t.Fatal(err)
	}
}

// launch starts the agent process without waiting for it.
func (c *Consul) launch(t testing.TB) {
	t.Helper()
	if c.cmd != nil {
		t.Fatalf("consul already running")
	}
	log, err := os.OpenFile(filepath.Join(c.dir, "consul.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	c.log = log
	args := append([]string{"agent"}, c.args...)
	args = append(args, "-node="+c.node, "-data-dir="+filepath.Join(c.dir, "data"),
		"-bind=127.0.0.1", "-client="+strings.TrimSpace("127.0.0.1 "+c.also), "-advertise=127.0.0.1",
		"-http-port="+strconv.Itoa(c.ports[0]), "-serf-lan-port="+strconv.Itoa(c.ports[1]),
		"-serf-wan-port="+strconv.Itoa(c.ports[2]), "-server-port="+strconv.Itoa(c.ports[3]),
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-log-level=warn",
		"-hcl", "performance { raft_multiplier = 1 }",
		"-hcl", "disable_update_check = true",
	)
	cmd := exec.Command(ConsulBinary(t), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting consul: %v", err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.done) }()
}

// waitReady waits until the agent knows a leader and finds its own node in
// the catalog; it fails at once when the agent, or one of peers (a
// cluster's servers), exits meanwhile.
func (c *Consul) waitReady(t testing.TB, timeout time.Duration, peers ...*Consul) {
	t.Helper()
	client := c.Client(t)
	deadline := time.Now().Add(timeout)
	for {
		leader, err := client.Status().Leader()
		if err == nil && leader != "" {
			if node, _, err := client.Catalog().Node(c.node, nil); err == nil && node != nil {
				return
			}
		}
		for _, a := range append([]*Consul{c}, peers...) {
			select {
			case <-a.done:
				log := filepath.Join(a.dir, "consul.log")
				t.Fatalf("consul %s exited during start; the end of %s:\n%s", a.node, log, logTail(log, 40))
			default:
			}
		}
		if time.Now().After(deadline) {
			// The log goes with the failure: a CI machine's temporary
			// directory is gone by the time anyone reads it.
			log := filepath.Join(c.dir, "consul.log")
			t.Fatalf("consul not ready after %v (leader %q, last error %v); the end of %s:\n%s", timeout, leader, err, log, logTail(log, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail is the last n lines of the file at path, or why it cannot be read.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop ends the agent with SIGTERM (SIGKILL after 10s). Idempotent.
func (c *Consul) Stop(t testing.TB) { c.signal(t, syscall.SIGTERM) }

// Kill ends the agent with SIGKILL, as a crash would. Idempotent.
func (c *Consul) Kill(t testing.TB) { c.signal(t, syscall.SIGKILL) }

func (c *Consul) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
	_ = c.log.Close()
}

// Client is a consul/api client for the agent.
func (c *Consul) Client(t testing.TB) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = c.HTTPAddr
	cfg.Token, cfg.TokenFile = c.Token, ""
	cfg.Transport.Proxy = nil
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// Register registers a service with a TTL check that starts passing, so a
// test can flip its health at once with SetHealth.
func (c *Consul) Register(t testing.TB, id, service, addr string, tags ...string) {
	t.Helper()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	err = c.Client(t).Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: service, Address: host, Port: port, Tags: tags,
		Check: &api.AgentServiceCheck{CheckID: "ttl:" + id, TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatalf("registering %s: %v", id, err)
	}
}

// SetHealth sets the TTL check of a service registered with Register.
func (c *Consul) SetHealth(t testing.TB, id, status string) {
	t.Helper()
	if err := c.Client(t).Agent().UpdateTTL("ttl:"+id, "set by test", status); err != nil {
		t.Fatalf("updating check of %s: %v", id, err)
	}
}

// Deregister removes a service from the agent.
func (c *Consul) Deregister(t testing.TB, id string) {
	t.Helper()
	if err := c.Client(t).Agent().ServiceDeregister(id); err != nil {
		t.Fatalf("deregistering %s: %v", id, err)
	}
}

// FreePort returns a port free on 127.0.0.1 at the time of the call, for
// TCP and for UDP (Consul's gossip ports take both), and never one it
// returned before in this process: the kernel may hand a port just closed
// to the next bind, and two of a cluster's agents given the same port
// leave it without a quorum.
func FreePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if uerr != nil {
			continue
		}
		u.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// handedOut holds the ports FreePort returned.
var handedOut sync.Map

// WaitFor polls cond every 20ms until it holds or timeout passes, then
// fails the test with what.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get is a GET with a client that follows no redirects and keeps no jar.
func Get(client *http.Client, url string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return client.Do(req)
}
