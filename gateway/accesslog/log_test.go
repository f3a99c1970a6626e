package accesslog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/internal/recorder"
)

// The access log reaches its writer in batches of whole records, in order,
// and nothing is left behind when the gateway stops.
func TestAccessLogBatches(t *testing.T) {
	out := &recorder.Writes{}
	b := &batchWriter{out: out}
	for i := range 3 {
		fmt.Fprintf(b, "record %d\n", i)
	}
	if n := len(out.All()); n != 0 {
		t.Fatalf("%d writes before a flush; want none", n)
	}
	b.flush()
	if got := out.All(); len(got) != 1 || got[0] != "record 0\nrecord 1\nrecord 2\n" {
		t.Fatalf("flush wrote %q; want the three records in one write", got)
	}

	// A full batch goes out before it would pass batchMax, whole records only.
	out.Reset()
	line := strings.Repeat("x", 999) + "\n"
	for range 3 * batchMax / len(line) {
		_, _ = b.Write([]byte(line))
	}
	writes := out.All()
	if len(writes) < 2 {
		t.Fatalf("%d writes for %d bytes; want batches of at most %d", len(writes), 3*batchMax, batchMax)
	}
	for _, w := range writes {
		if len(w) > batchMax || !strings.HasSuffix(w, "\n") || len(w)%len(line) != 0 {
			t.Fatalf("a write of %d bytes; want whole records, at most %d bytes", len(w), batchMax)
		}
	}

	// run flushes what is left when its context ends.
	out.Reset()
	_, _ = b.Write([]byte("last\n"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.run(ctx, nil, slog.New(slog.DiscardHandler)); close(done) }()
	cancel()
	<-done
	if got := strings.Join(out.All(), ""); !bytes.HasSuffix([]byte(got), []byte("last\n")) {
		t.Fatalf("after stop the writer got %q; want the last record", got)
	}
}

// An access file renamed away (logrotate without copytruncate) is
// reopened at its path within rotateCheck; a value on the reopen channel
// (SIGUSR1) reopens at once; durations are seconds under duration_s.
func TestAccessFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := &batchWriter{out: f}
	reopen := make(chan os.Signal, 1)
	var logs recorder.Writes
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.run(ctx, reopen, slog.New(slog.NewTextHandler(&logs, nil))); close(done) }()
	defer func() { cancel(); <-done }()
	read := func(p string) string { data, _ := os.ReadFile(p); return string(data) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s (logs %q)", what, logs.All())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Fprintf(b, "one\n")
	waitFor("first line written", func() bool { return read(path) == "one\n" })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	waitFor("file reopened after the rename", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	fmt.Fprintf(b, "two\n")
	waitFor("second line in the new file", func() bool { return read(path) == "two\n" })
	if got := read(path + ".1"); got != "one\n" {
		t.Fatalf("rotated file holds %q; want only the first line", got)
	}

	// SIGUSR1 reopens even when the path was not moved (logrotate's
	// postrotate after it created the new file itself).
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	reopen <- syscall.SIGUSR1
	waitFor("reopened on the signal", func() bool { return strings.Contains(strings.Join(logs.All(), ""), "why=signal") })
	fmt.Fprintf(b, "three\n")
	waitFor("third line in the newest file", func() bool { return read(path) == "three\n" })

	// The access line's duration: seconds, unit in the key.
	var line recorder.Writes
	for _, format := range []string{"json", "text"} {
		line.Reset()
		cfg := config.Log{Level: "info", Format: format, Access: config.Set(true)}
		l := New(cfg, nil, NewLogger(cfg, &line))
		if !l.Enabled(context.Background()) {
			t.Fatalf("%s: the access log is off", format)
		}
		l.Write(&Entry{Time: time.Now(), Method: "GET", Path: "/x", Status: 404, Duration: 1500 * time.Millisecond})
		got := strings.Join(line.All(), "")
		if !regexp.MustCompile(`"?duration_s"?[=:]1\.5\d*[,}\s]`).MatchString(got) || strings.Contains(got, `duration"`) ||
			strings.Contains(got, "duration=") {
			t.Fatalf("%s access line %q; want duration_s=1.5… seconds and no unitless duration", format, got)
		}
	}
}
