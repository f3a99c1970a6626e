// Package recorder owns a test helper of the gateway's packages: an
// io.Writer that remembers each Write apart, for tests that check what was
// logged and in how many writes.
package recorder

import "sync"

// Writes remembers each Write separately. Safe for concurrent use; the
// zero value is ready.
type Writes struct {
	mu     sync.Mutex
	writes []string
}

// Write records a copy of p as one write.
func (r *Writes) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

// All returns the writes so far, in order.
func (r *Writes) All() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// Reset forgets the writes so far.
func (r *Writes) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = nil
}
