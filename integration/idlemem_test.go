package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/integration/procstat"
)

// idleMem is what a proxy holds for idle keep-alive client connections.
type idleMem struct {
	Proxy  string `json:"proxy"`
	Conns  int    `json:"connections"`
	Before int64  `json:"rss_before_bytes"`     // RSS before the connections opened
	Open   int64  `json:"rss_open_bytes"`       // with every connection open and idle
	Closed int64  `json:"rss_closed_bytes"`     // 30 s after they closed
	Late   int64  `json:"rss_closed_60s_bytes"` // 60 s after they closed
	// Back is how long after the close RSS took to come back within 20%
	// of Before (-1: not within the 60 s).
	Back time.Duration `json:"rss_back_within_20pct_ns"`
}

// PerConn is the RSS each idle connection costs, in bytes.
func (m idleMem) PerConn() float64 { return float64(m.Open-m.Before) / float64(m.Conns) }

// measureIdle opens n keep-alive connections to url, sends one request on
// each (with cookie, so no new session is made) and reads the answer, then
// reads proc's RSS with all of them idle, closes them and follows it for
// 60 s (issue 25's target: within 20% of Before by then).
func measureIdle(b *testing.B, name, url, cookie string, proc *harness.Process, n int) idleMem {
	m, err := tryIdle(b, name, url, cookie, proc, n)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// tryIdle is measureIdle, returning a connection the proxy did not serve
// (and how many it did) as an error.
func tryIdle(b *testing.B, name, url, cookie string, proc *harness.Process, n int) (idleMem, error) {
	m := idleMem{Proxy: name, Conns: n, Before: settledRSS(b, proc)}
	req := fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n", hostPort(url), cookie)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", hostPort(url))
		if err != nil {
			return m, &idleRefused{name, len(conns), n, err}
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return m, &idleRefused{name, len(conns) - 1, n, err}
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return m, &idleRefused{name, len(conns) - 1, n, err}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			b.Fatalf("%s: connection %d: %s, close=%v: want a kept-alive 200", name, len(conns), resp.Status, resp.Close)
		}
	}
	// Past latch's park delay (a second), so its idle connections are
	// parked as they are in use, and past the memory its watcher returns
	// a second or two after the goroutines' count stops falling.
	time.Sleep(4 * time.Second)
	m.Open = settledRSS(b, proc)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	closed := time.Now()
	m.Back = -1
	for time.Since(closed) < 60*time.Second {
		time.Sleep(500 * time.Millisecond)
		s, err := procstat.Read(proc.PID())
		if err != nil {
			b.Fatal(err)
		}
		if time.Since(closed) < 30*time.Second {
			m.Closed = s.RSS
		}
		if m.Late = s.RSS; m.Back < 0 && 5*s.RSS <= 6*m.Before {
			m.Back = time.Since(closed)
		}
	}
	return m, nil
}

// idleRefused: the proxy served only Served of the connections.
type idleRefused struct {
	Proxy         string
	Served, Conns int
	Err           error
}

func (e *idleRefused) Error() string {
	return fmt.Sprintf("%s: connection %d of %d: %v", e.Proxy, e.Served+1, e.Conns, e.Err)
}

// settledRSS reads proc's RSS (children included) until two readings half
// a second apart agree within 1%, or 10 seconds have passed.
func settledRSS(b *testing.B, proc *harness.Process) int64 {
	prev := int64(-1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := procstat.Read(proc.PID())
		if err != nil {
			b.Fatal(err)
		}
		if d := s.RSS - prev; prev >= 0 && (d < 0 && -d <= prev/100 || d >= 0 && d <= prev/100) || time.Now().After(deadline) {
			return s.RSS
		}
		prev = s.RSS
		time.Sleep(500 * time.Millisecond)
	}
}

// raiseFileLimit lifts the soft open-file limit to the hard one (the
// processes started after inherit it) and reports whether n connections
// (one descriptor here, one in the proxy, plus headroom) fit.
func raiseFileLimit(n int) (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur, l.Cur >= uint64(n)+1024
}
