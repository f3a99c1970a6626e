//go:build race && linux

package sockio

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Issue 22: the race detector did not see the memory a raw read(2) or
// write(2) touched, so a buffer sockio filled or sent while another
// goroutine used it raced unreported, and -race was no proof on the byte
// paths. A child process (this test binary, built with -race) races on
// such a buffer on purpose; the detector must report it, for a read and
// for a write. Before race.go the child passed silently.
func TestRawIOSeenByRace(t *testing.T) {
	if op := os.Getenv("SOCKIO_RACE_CHILD"); op != "" {
		raceOnBuffer(t, op)
		return
	}
	for op, frame := range map[string]string{"read": "internal/sockio.Read(", "write": "internal/sockio.Write("} {
		t.Run(op, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRawIOSeenByRace$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SOCKIO_RACE_CHILD="+op, "GORACE=halt_on_error=1")
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "WARNING: DATA RACE") || !strings.Contains(string(out), frame) {
				t.Fatalf("a race on a buffer given to sockio's raw %s went unreported (err %v):\n%s", op, err, out)
			}
		})
	}
}

// raceOnBuffer reads into (or writes from) a buffer on one goroutine
// through sockio while this one touches it, with nothing ordering the two.
func raceOnBuffer(t *testing.T, op string) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	if _, err := syscall.Write(fds[1], []byte("x")); err != nil { // a byte to read: Read returns at once
		t.Fatal(err)
	}
	buf := []byte{'a'}
	done := make(chan error)
	go func() {
		var err error
		if op == "read" {
			_, err = Read(uintptr(fds[0]), buf)
		} else {
			_, err = Write(uintptr(fds[0]), buf)
		}
		done <- err
	}()
	buf[0] = 'b' // unordered with the goroutine's system call
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
