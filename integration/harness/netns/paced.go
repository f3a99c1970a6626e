package netns

import (
	"net"
	"sync/atomic"
	"time"
)

// Pace is how one direction of a PacedConn moves bytes. The zero Pace
// moves them as the caller asks.
type Pace struct {
	// Chunk is the most bytes one read or write system call moves (0: no
	// limit): 1 dribbles a byte at a time.
	Chunk int
	// Pause is slept after each call.
	Pause time.Duration
	// Budget is how many bytes, counted from the last reset, move at
	// Chunk and Pause; the rest moves at full speed (0: every byte is
	// paced). A slow reader that stays slow for 16 MiB makes a test slow
	// without pushing back any harder than it did for the first window.
	Budget int64
	// Stalls are offsets (from the last reset) where the conn stops for
	// StallFor once, e.g. mid-head and mid-body.
	Stalls   []int64
	StallFor time.Duration
}

func (p Pace) zero() bool { return p.Chunk == 0 && p.Pause == 0 && len(p.Stalls) == 0 }

// pacer counts one direction's bytes since the last reset. Reset may come
// from another goroutine than the reads (net/http reads ahead on a
// goroutine of its own), hence the atomic.
type pacer struct {
	Pace
	n atomic.Int64
}

// cut is how much of want bytes the next call may move.
func (p *pacer) cut(want int) int {
	n := p.n.Load()
	if p.Chunk > 0 && want > p.Chunk && (p.Budget == 0 || n < p.Budget) {
		want = p.Chunk
	}
	for _, s := range p.Stalls {
		if n < s && n+int64(want) > s {
			want = int(s - n) // stop exactly at the stall
		}
	}
	return want
}

// moved records n bytes moved and sleeps as the pace says.
func (p *pacer) moved(n int) {
	before := p.n.Add(int64(n)) - int64(n)
	if p.Pause > 0 && (p.Budget == 0 || before < p.Budget) {
		time.Sleep(p.Pause)
	}
	for _, s := range p.Stalls {
		if before < s && before+int64(n) >= s {
			time.Sleep(p.StallFor)
		}
	}
}

// PacedConn is a net.Conn whose reads and writes move at a Pace: a peer
// that reads slowly (with a small SO_RCVBUF, the sender's writes come back
// short), dribbles a byte at a time or stalls mid-message.
type PacedConn struct {
	net.Conn
	rd, wr pacer
}

// Paced wraps c.
func Paced(c net.Conn, read, write Pace) *PacedConn {
	return &PacedConn{Conn: c, rd: pacer{Pace: read}, wr: pacer{Pace: write}}
}

// Read reads at the connection's read pace.
func (c *PacedConn) Read(b []byte) (int, error) {
	if c.rd.zero() || len(b) == 0 {
		return c.Conn.Read(b)
	}
	n, err := c.Conn.Read(b[:c.rd.cut(len(b))])
	c.rd.moved(n)
	return n, err
}

// Write writes at the connection's write pace.
func (c *PacedConn) Write(b []byte) (int, error) {
	if c.wr.zero() {
		return c.Conn.Write(b)
	}
	done := 0
	for done < len(b) {
		n, err := c.Conn.Write(b[done : done+c.wr.cut(len(b)-done)])
		done += n
		c.wr.moved(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ResetRead starts the read pace over (its budget and stalls): a backend
// calls it when a request ends, so the next one is paced as the first.
func (c *PacedConn) ResetRead() { c.rd.n.Store(0) }

// ResetWrite starts the write pace over.
func (c *PacedConn) ResetWrite() { c.wr.n.Store(0) }

// PacedListener accepts PacedConns.
type PacedListener struct {
	net.Listener
	Read, Write Pace
}

// Accept returns the next connection, paced as the listener says.
func (l *PacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Paced(c, l.Read, l.Write), nil
}
