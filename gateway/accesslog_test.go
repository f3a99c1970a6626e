package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// recorder remembers each Write separately.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// The access log reaches its writer in batches of whole records, in order,
// and nothing is left behind when the gateway stops.
func TestAccessLogBatches(t *testing.T) {
	out := &recorder{}
	b := &batchWriter{out: out}
	for i := range 3 {
		fmt.Fprintf(b, "record %d\n", i)
	}
	if n := len(out.all()); n != 0 {
		t.Fatalf("%d writes before a flush; want none", n)
	}
	b.flush()
	if got := out.all(); len(got) != 1 || got[0] != "record 0\nrecord 1\nrecord 2\n" {
		t.Fatalf("flush wrote %q; want the three records in one write", got)
	}

	// A full batch goes out before it would pass batchMax, whole records only.
	out.writes = nil
	line := strings.Repeat("x", 999) + "\n"
	for range 3 * batchMax / len(line) {
		_, _ = b.Write([]byte(line))
	}
	writes := out.all()
	if len(writes) < 2 {
		t.Fatalf("%d writes for %d bytes; want batches of at most %d", len(writes), 3*batchMax, batchMax)
	}
	for _, w := range writes {
		if len(w) > batchMax || !strings.HasSuffix(w, "\n") || len(w)%len(line) != 0 {
			t.Fatalf("a write of %d bytes; want whole records, at most %d bytes", len(w), batchMax)
		}
	}

	// run flushes what is left when its context ends.
	out.writes = nil
	_, _ = b.Write([]byte("last\n"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.run(ctx); close(done) }()
	cancel()
	<-done
	if got := strings.Join(out.all(), ""); !bytes.HasSuffix([]byte(got), []byte("last\n")) {
		t.Fatalf("after stop the writer got %q; want the last record", got)
	}
}
