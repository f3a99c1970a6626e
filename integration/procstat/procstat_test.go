package procstat

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestReadSelfCountsCPUAndSwitches(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn 100ms of CPU (a few ticks), as getrusage counts it, and switch a
	// few hundred times. (Spinning 100ms of wall time got 40ms of CPU on a
	// loaded CI machine: the check failed though procstat was right.)
	start := cpuNow(t)
	for deadline := time.Now().Add(30 * time.Second); cpuNow(t)-start < 100*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatal("could not burn 100ms of CPU in 30s")
		}
	}
	for range 200 {
		time.Sleep(50 * time.Microsecond)
		runtime.Gosched()
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d.CPU < 50*time.Millisecond {
		t.Errorf("CPU grew by %v after ~100ms of spinning", d.CPU)
	}
	if d.CtxSwitches < 50 {
		t.Errorf("context switches grew by %d after 200 sleeps", d.CtxSwitches)
	}
	if after.RSS < 1<<20 {
		t.Errorf("RSS %d bytes: too small for a Go test binary", after.RSS)
	}
}

func TestReadIncludesChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids := descendants(os.Getpid())
	found := false
	for _, k := range kids {
		found = found || k == cmd.Process.Pid
	}
	if !found {
		t.Fatalf("descendants of %d = %v, want %d among them", os.Getpid(), kids, cmd.Process.Pid)
	}
	self, _ := readOne(os.Getpid())
	tree, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree.RSS <= self.RSS {
		t.Errorf("tree RSS %d not above own %d: the child was not summed", tree.RSS, self.RSS)
	}
}

func TestReadMissingProcess(t *testing.T) {
	if _, err := Read(1 << 30); err == nil {
		t.Fatal("Read of a pid that cannot exist: no error")
	}
}

// cpuNow is the process's CPU time (user and system) as getrusage tells it.
func cpuNow(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
