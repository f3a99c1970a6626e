package h1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/latchgw/latch/integration/loadgen"
	"github.com/latchgw/latch/integration/procstat"
)

// trivial is the handler both servers serve: chi routing to a fixed body.
func trivial() http.Handler {
	mux := chi.NewRouter()
	mux.Get("/*", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("hello"))
	})
	return mux
}

// serveKind starts "h1" or "net/http" on loopback and returns its address
// and a stop function.
func serveKind(tb testing.TB, kind string, h http.Handler) (string, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var shutdown func(context.Context) error
	done := make(chan error, 1)
	switch kind {
	case "h1":
		s := &Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		shutdown = s.Shutdown
		go func() { done <- s.Serve(l) }()
	case "net/http":
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		shutdown = s.Shutdown
		go func() { done <- s.Serve(l) }()
	default:
		tb.Fatalf("server kind %q", kind)
	}
	return l.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Error(err)
		}
	}
}

// rawClient sends one fixed request at a time on one keep-alive
// connection and reads the answer without allocating, so allocs/op are
// the server's.
type rawClient struct {
	c   net.Conn
	buf []byte
	req []byte
}

func newRawClient(tb testing.TB, addr string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return &rawClient{c: c, buf: make([]byte, 4096), req: []byte("GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: raw\r\nAccept: */*\r\n\r\n")}
}

var (
	crlf2 = []byte("\r\n\r\n")
	clKey = []byte("Content-Length: ")
)

func (rc *rawClient) do() error {
	if _, err := rc.c.Write(rc.req); err != nil {
		return err
	}
	n := 0
	for {
		m, err := rc.c.Read(rc.buf[n:])
		n += m
		if end := bytes.Index(rc.buf[:n], crlf2); end >= 0 {
			i := bytes.Index(rc.buf[:end], clKey)
			if i < 0 {
				return fmt.Errorf("no Content-Length in %q", rc.buf[:n])
			}
			j := i + len(clKey)
			k := bytes.IndexByte(rc.buf[j:end+2], '\r')
			length, _ := strconv.Atoi(string(rc.buf[j : j+k]))
			if n >= end+4+length {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// BenchmarkServe: both servers answer a chi-routed trivial handler to 64
// keep-alive connections over loopback; allocs/op are the server's (the
// client allocates nothing).
func BenchmarkServe(b *testing.B) {
	for _, kind := range []string{"h1", "net/http"} {
		b.Run(kind, func(b *testing.B) {
			addr, stop := serveKind(b, kind, trivial())
			defer stop()
			const conns = 64
			clients := make(chan *rawClient, conns)
			for range conns {
				clients <- newRawClient(b, addr)
			}
			b.SetParallelism((conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rc := <-clients
				for pb.Next() {
					if err := rc.do(); err != nil {
						b.Error(err)
						return
					}
				}
				rc.c.Close()
			})
		})
	}
}

// BenchmarkIdleConnMemory: 2,000 connections, one request each, then
// idle (h1's parked); heap and goroutine stacks per connection after a GC
// (the test process holds both ends: the client's half is the same for
// both). BenchmarkIdleConnRSS measures the server alone.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	for _, kind := range []string{"h1", "net/http"} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				addr, stop := serveKind(b, kind, trivial())
				before := inUse()
				var cs []*rawClient
				for range n {
					rc := newRawClient(b, addr)
					if err := rc.do(); err != nil {
						b.Fatal(err)
					}
					rc.buf = nil
					cs = append(cs, rc)
				}
				idleSettle(b, kind)
				after := inUse()
				b.ReportMetric(float64(after-before)/n, "bytes/idle-conn")
				for _, rc := range cs {
					rc.c.Close()
				}
				stop()
			}
		})
	}
}

func inUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// BenchmarkWrk: Debian's wrk (2 threads, 64 connections) against each
// server in this process; req/s and this process's CPU per 1,000
// requests. Needs wrk (make bench-tools).
func BenchmarkWrk(b *testing.B) {
	if !loadgen.WrkAvailable() {
		b.Fatal("wrk is not on PATH: make bench-tools")
	}
	d := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("H1_WRK_DURATION")); err == nil {
		d = v
	}
	for _, kind := range []string{"h1", "net/http"} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				addr, stop := serveKind(b, kind, trivial())
				st0, err := procstat.Read(os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				res, err := loadgen.RunWrk(context.Background(), loadgen.Options{URL: "http://" + addr + "/x", Concurrency: 64, Duration: d})
				if err != nil {
					b.Fatal(err)
				}
				st1, _ := procstat.Read(os.Getpid())
				stop()
				if res.Errors > 0 {
					b.Errorf("%d errors", res.Errors)
				}
				delta := st1.Sub(st0)
				b.ReportMetric(res.RPS, "req/s")
				b.ReportMetric(delta.CPU.Seconds()/float64(res.Requests)*1000, "cpu-s/1k-req")
				b.ReportMetric(float64(delta.CtxSwitches)/float64(res.Requests), "csw/req")
				b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
			}
		})
	}
}
