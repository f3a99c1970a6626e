package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// demoRun is `make demo` running as a user runs it in a terminal: a
// process group of its own (the terminal's foreground group), its output
// in a file.
type demoRun struct {
	cmd     *exec.Cmd
	logPath string
	done    chan error
	stopped bool
}

// startDemo runs `make demo` in root with env and waits until it says it
// is up. Its process group is killed when the test ends, if still running;
// a failed test gets what it printed.
func startDemo(t *testing.T, root string, env []string) *demoRun {
	t.Helper()
	d := &demoRun{cmd: exec.Command("make", "--no-print-directory", "demo"),
		logPath: filepath.Join(t.TempDir(), "demo.log"), done: make(chan error, 1)}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	d.cmd.Dir, d.cmd.Env, d.cmd.Stdout, d.cmd.Stderr = root, env, logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.stopped {
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL) // the group this test started
			<-d.done
		}
		if t.Failed() {
			t.Logf("make demo printed:\n%s", d.printed())
		}
	})
	// make tools and make build come first: minutes on a cold machine.
	harness.WaitFor(t, 5*time.Minute, "make demo to say it is up (log "+d.logPath+")", func() bool {
		select {
		case err := <-d.done:
			d.stopped = true
			t.Fatalf("make demo exited before it was up: %v", err)
		default:
		}
		return strings.Contains(d.printed(), "latch demo is up")
	})
	return d
}

// printed is what the demo printed so far.
func (d *demoRun) printed() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// interrupt is Ctrl-C: SIGINT to the demo's process group; it waits until
// make returns and every process of the group has ended.
func (d *demoRun) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done: // make reports the interrupt with a non-zero status, as in a terminal
		d.stopped = true
	case <-time.After(60 * time.Second):
		t.Fatal("make demo did not stop within 60s of Ctrl-C")
	}
	harness.WaitFor(t, 20*time.Second, "every process of make demo to end", func() bool {
		return errors.Is(syscall.Kill(-d.cmd.Process.Pid, 0), syscall.ESRCH)
	})
}
