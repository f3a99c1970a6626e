package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// The compose suite drives the docker CLI and `docker compose` (v2) on the
// repository's own docker-compose.yml, under a project name it owns, so it
// only ever starts, stops and removes its own containers, networks and
// volumes.

const composeProject = "latchtest"

// EnvRequireDocker, set (CI's .ci/run does), makes a missing Docker daemon a
// failure of the compose suite instead of a skip.
const EnvRequireDocker = "LATCH_REQUIRE_DOCKER"

// composeRig is the running project: its host ports and a way to run
// compose commands on it.
type composeRig struct {
	root                            string
	env                             []string
	port, adminPort, consulPort     int
	replicaPort                     int
	url, adminURL, consulURL, r2URL string
}

// dockerAnswers reports whether a Docker daemon answers within 15s.
func dockerAnswers() bool {
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").Run() == nil
}

// portOr returns def when 127.0.0.1:def is free, else a free port: the
// documented ports when this machine has them free, as users get them.
func portOr(t *testing.T, def int) int {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", def))
	if err != nil {
		p := harness.FreePort(t)
		t.Logf("port %d is busy: using %d", def, p)
		return p
	}
	l.Close()
	return def
}

func newComposeRig(t *testing.T) *composeRig {
	r := &composeRig{root: harness.RepoRoot()}
	r.port, r.adminPort = portOr(t, 8080), portOr(t, 9090)
	r.consulPort, r.replicaPort = portOr(t, 8500), portOr(t, 8081)
	r.env = append(os.Environ(),
		"COMPOSE_PROJECT_NAME="+composeProject,
		"LATCH_PORT="+strconv.Itoa(r.port), "LATCH_ADMIN_PORT="+strconv.Itoa(r.adminPort),
		"CONSUL_PORT="+strconv.Itoa(r.consulPort), "LATCH_REPLICA_PORT="+strconv.Itoa(r.replicaPort),
		"LATCH_COOKIE_SECRET=", // the compose file's own way: a secret file latch creates
	)
	r.url = fmt.Sprintf("http://localhost:%d/", r.port)
	r.adminURL = fmt.Sprintf("http://127.0.0.1:%d", r.adminPort)
	r.consulURL = fmt.Sprintf("http://127.0.0.1:%d", r.consulPort)
	r.r2URL = fmt.Sprintf("http://localhost:%d/", r.replicaPort)
	return r
}

// run runs a command in the repository with the rig's environment and
// returns its combined output; it fails the test on a non-zero exit.
func (r *composeRig) run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := r.try(timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func (r *composeRig) try(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = r.root, r.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// compose runs `docker compose` on the repository's file.
func (r *composeRig) compose(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	return r.run(t, timeout, "docker", append([]string{"compose"}, args...)...)
}

// down removes the project's containers (every profile's), networks and
// volumes.
func (r *composeRig) down(t *testing.T) {
	if out, err := r.try(3*time.Minute, "docker", "compose", "--profile", "*", "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		t.Logf("docker compose down: %v\n%s", err, out)
	}
}

// container is the name of a service's (first) container.
func (r *composeRig) container(t *testing.T, service string) string {
	t.Helper()
	return strings.TrimSpace(r.compose(t, time.Minute, "ps", "-a", "--format", "{{.Name}}", service))
}

// unhealthy lists the project's running services that are not healthy.
func (r *composeRig) unhealthy(t *testing.T) (bad []string, n int) {
	t.Helper()
	out := r.compose(t, time.Minute, "ps", "--format", "json")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c struct{ Service, State, Health string }
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("docker compose ps: %v: %q", err, line)
		}
		n++
		if c.State != "running" || c.Health != "healthy" {
			bad = append(bad, fmt.Sprintf("%s: %s/%s", c.Service, c.State, c.Health))
		}
	}
	return bad, n
}

// redisKeys is DBSIZE of the project's Redis.
func (r *composeRig) redisKeys(t *testing.T) int {
	t.Helper()
	out := r.compose(t, time.Minute, "exec", "-T", "redis", "redis-cli", "dbsize")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("redis-cli dbsize: %q", out)
	}
	return n
}

// logs are the last 40 lines of a service's log but latch's access log,
// for failure messages.
func (r *composeRig) logs(service string) string {
	out, _ := r.try(time.Minute, "docker", "compose", "--profile", "*", "logs", "--no-color", "--tail", "2000", service)
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep[max(0, len(keep)-40):], "\n")
}

// prepareImages makes the stand-in images (cached) and checks that
// `docker compose` is v2.
func prepareImages(t *testing.T, r *composeRig) {
	t.Helper()
	out, err := r.try(30*time.Second, "docker", "compose", "version", "--short")
	if err != nil {
		t.Fatalf("docker compose (v2) is missing: make tools installs it: %v\n%s", err, out)
	}
	t.Logf("docker compose %s", strings.TrimSpace(out))
	consul := harness.ConsulBinary(t)
	r.env = append(r.env, "CONSUL_BIN="+consul)
	start := time.Now()
	out = r.run(t, 15*time.Minute, "bash", filepath.Join("integration", "tools", "images.sh"))
	t.Logf("images (%v):\n%s", time.Since(start).Round(time.Second), out)
}
