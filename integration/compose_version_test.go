package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The compose suite's first and last steps: `up` runs the checkout's code
// (not an older latch:local) and says so; the README's teardown leaves
// nothing of the project.

// olderLatch is the latch:local image the suite builds from an older commit
// before `up`, and what its latch says to -version.
type olderLatch struct{ commit, version string }

// buildOlderLatch builds latch:local from the commit before HEAD, with that
// commit's own compose file, Dockerfile and sources (git archive), as a
// checkout left it before a git pull. (docker compose builds it: the
// docker CLI here builds with BuildKit only through buildx, which compose
// does not need.)
func (r *composeRig) buildOlderLatch(t *testing.T) olderLatch {
	t.Helper()
	commit := strings.TrimSpace(r.run(t, time.Minute, "git", "rev-parse", "HEAD~1"))
	dir := t.TempDir()
	start := time.Now()
	r.run(t, time.Minute, "bash", "-c", "git archive --format=tar "+commit+" | tar -x -C "+dir)
	r.run(t, 15*time.Minute, "docker", "compose", "-p", composeProject+"-older", "--project-directory", dir,
		"-f", filepath.Join(dir, "docker-compose.yml"), "build", "latch")
	version := strings.TrimSpace(r.run(t, time.Minute, "docker", "run", "--rm", "--name", composeProject+"-older-version", "latch:local", "-version"))
	t.Logf("latch:local from %.12s (%v): %s", commit, time.Since(start).Round(time.Second), version)
	return olderLatch{commit: commit, version: version}
}

// composeVersion: after `up`, latch (-version and its start-up log) and the
// demo backends say this checkout's version and commit, which the older
// latch:local did not.
func composeVersion(t *testing.T, r *composeRig, old olderLatch) faultRow {
	t.Helper()
	version := strings.TrimSpace(r.run(t, time.Minute, "git", "describe", "--tags", "--always", "--dirty"))
	revision := strings.TrimSpace(r.run(t, time.Minute, "git", "rev-parse", "HEAD"))
	want := fmt.Sprintf("latch %s (revision %s)", version, revision)
	if strings.Contains(old.version, revision) {
		t.Fatalf("the older latch:local already says this checkout's commit: %s", old.version)
	}
	got := strings.TrimSpace(r.compose(t, time.Minute, "exec", "-T", "latch", "/latch", "-version"))
	if !strings.HasPrefix(got, want) {
		t.Errorf("docker compose exec latch /latch -version:\n%s\nwant it to start with\n%s\n(latch:local before up said: %s)", got, want, old.version)
	}
	if logs := r.logs("latch"); !strings.Contains(logs, `"msg":"latch starting","version":"`+want) {
		t.Errorf("latch's start-up log does not say %q:\n%s", want, logs)
	}
	backend := strings.TrimSpace(r.compose(t, time.Minute, "exec", "-T", "web-1", "/demo-backend", "-version"))
	if !strings.HasPrefix(backend, fmt.Sprintf("demo-backend %s (revision %s)", version, revision)) {
		t.Errorf("docker compose exec web-1 /demo-backend -version: %s; want %s, %s", backend, version, revision)
	}
	return faultRow{name: "up rebuilt latch:local from the checkout",
		note: fmt.Sprintf("was %.12s's build; now %s", old.commit, strings.TrimPrefix(want, "latch "))}
}

// composeTeardown: the README's teardown, after the replica and extra
// profiles ran, leaves no container, network or volume of the project.
func composeTeardown(t *testing.T, r *composeRig) faultRow {
	t.Helper()
	before := r.projectObjects(t)
	r.run(t, 3*time.Minute, "bash", "-c", readmeDown)
	if left := r.projectObjects(t); left != "" {
		t.Errorf("after %s, left of project %s:\n%s", readmeDown, composeProject, left)
	}
	n := len(strings.Split(before, "\n"))
	return faultRow{name: "README teardown", note: fmt.Sprintf("%d containers, networks and volumes before; none after", n)}
}

// projectObjects lists the containers (running or not), networks and
// volumes labelled with the project's name, one a line.
func (r *composeRig) projectObjects(t *testing.T) string {
	t.Helper()
	label := "label=com.docker.compose.project=" + composeProject
	var all []string
	for _, cmd := range [][]string{
		{"docker", "ps", "-a", "--filter", label, "--format", "container {{.Names}}"},
		{"docker", "network", "ls", "--filter", label, "--format", "network {{.Name}}"},
		{"docker", "volume", "ls", "--filter", label, "--format", "volume {{.Name}}"},
	} {
		if out := strings.TrimSpace(r.run(t, time.Minute, cmd[0], cmd[1:]...)); out != "" {
			all = append(all, out)
		}
	}
	return strings.Join(all, "\n")
}
