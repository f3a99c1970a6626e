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
	Before int64  `json:"rss_before_bytes"` // RSS before the connections opened
	Open   int64  `json:"rss_open_bytes"`   // with every connection open and idle
	Closed int64  `json:"rss_closed_bytes"` // once they closed and RSS settled
}

// PerConn is the RSS each idle connection costs, in bytes.
func (m idleMem) PerConn() float64 { return float64(m.Open-m.Before) / float64(m.Conns) }

// measureIdle opens n keep-alive connections to url, sends one request on
// each (with cookie, so no new session is made) and reads the answer, then
// reads proc's RSS with all of them idle, closes them and reads it again.
func measureIdle(b *testing.B, name, url, cookie string, proc *harness.Process, n int) idleMem {
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
			b.Fatalf("%s: connection %d of %d: %v", name, len(conns)+1, n, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatalf("%s: connection %d: %v", name, len(conns), err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			b.Fatalf("%s: connection %d: %s, close=%v: want a kept-alive 200", name, len(conns), resp.Status, resp.Close)
		}
	}
	m.Open = settledRSS(b, proc)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	m.Closed = settledRSS(b, proc)
	return m
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
