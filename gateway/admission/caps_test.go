package admission

import (
	"net"
	"sync"
	"testing"
)

// tally is an Observer that counts what it is told.
type tally struct {
	mu          sync.Mutex
	open        int
	refused     map[string]int
	refusedReqs map[string]int
}

func newTally() *tally {
	return &tally{refused: map[string]int{}, refusedReqs: map[string]int{}}
}

func (t *tally) ConnOpened()              { t.mu.Lock(); t.open++; t.mu.Unlock() }
func (t *tally) ConnClosed()              { t.mu.Lock(); t.open--; t.mu.Unlock() }
func (t *tally) ConnRefused(limit string) { t.mu.Lock(); t.refused[limit]++; t.mu.Unlock() }
func (t *tally) Refused(reason string)    { t.mu.Lock(); t.refusedReqs[reason]++; t.mu.Unlock() }

// peer is a connection from addr ("ip:port"); only RemoteAddr is used.
type peer struct {
	net.Conn
	addr net.Addr
}

func (p peer) RemoteAddr() net.Addr { return p.addr }

func from(t *testing.T, addr string) net.Conn {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return &peer{addr: a}
}

// Caps refuse past each cap, admit a connection once, and count a
// released one out so the next is admitted.
func TestCaps(t *testing.T) {
	obs := newTally()
	caps := NewCaps(3, 2, obs)
	a1, a2, a3 := from(t, "10.0.0.1:1"), from(t, "10.0.0.1:2"), from(t, "10.0.0.1:3")
	b1, c1 := from(t, "10.0.0.2:1"), from(t, "10.0.0.3:1")
	steps := []struct {
		conn net.Conn
		want string
	}{
		{a1, ""}, {a2, ""},
		{a1, ""},       // admitted already: passes, not counted twice
		{a3, "per_ip"}, // 10.0.0.1's third
		{b1, ""},
		{c1, "total"}, // the fourth in all
	}
	for i, s := range steps {
		if got := caps.Admit(s.conn); got != s.want {
			t.Fatalf("step %d (%v): Admit = %q; want %q", i, s.conn.RemoteAddr(), got, s.want)
		}
	}
	if obs.open != 3 || obs.refused["per_ip"] != 1 || obs.refused["total"] != 1 {
		t.Fatalf("open %d, refused %v; want 3 open, one refused per cap", obs.open, obs.refused)
	}
	caps.Release(c1) // never admitted: ignored
	caps.Release(a1)
	caps.Release(a1) // released already: ignored
	if obs.open != 2 {
		t.Fatalf("open %d after one release; want 2", obs.open)
	}
	if got := caps.Admit(a3); got != "" {
		t.Fatalf("after a release, Admit = %q; want admitted", got)
	}
}

// A nil *Caps caps nothing (tlsserve.SplitServer may hold one).
func TestNilCaps(t *testing.T) {
	var caps *Caps = NewCaps(0, 0, newTally())
	if caps != nil {
		t.Fatal("NewCaps(0, 0) is not nil")
	}
	c := from(t, "10.0.0.1:1")
	if got := caps.Admit(c); got != "" {
		t.Fatalf("nil Caps: Admit = %q", got)
	}
	caps.Release(c)
}
