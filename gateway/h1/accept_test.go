//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first fails Accepts with err, then accepts.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// lockedBuffer collects log lines written from Serve's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// acceptError is what a *net.TCPListener returns for errno.
func acceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// TestServeRetriesAccept: an accept that fails for want of descriptors or
// memory does not end Serve (and latch with it); Serve waits, logs, and
// serves the next connection, as net/http's Serve does.
func TestServeRetriesAccept(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"ENFILE", acceptError(syscall.ENFILE)},
		{"EMFILE", acceptError(syscall.EMFILE)},
		{"ENOBUFS", acceptError(syscall.ENOBUFS)},
		{"ENOMEM", acceptError(syscall.ENOMEM)},
		{"ECONNABORTED", acceptError(syscall.ECONNABORTED)},
		{"EPROTO", acceptError(syscall.EPROTO)},
		{"timeout", acceptError(syscall.ETIMEDOUT)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { inner.Close() }) // Serve may have left it open
			const fails = 3
			var logs lockedBuffer
			srv := &Server{
				Log:     slog.New(slog.NewTextHandler(&logs, nil)),
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
			}
			addr := startOn(t, srv, &failingListener{Listener: inner, fails: fails, err: tc.err})
			body, err := get(t, "http://"+addr+"/")
			if err != nil || body != "ok" {
				t.Fatalf("GET after %d failed accepts: %q, %v", fails, body, err)
			}
			if n := strings.Count(logs.String(), "accept failed; retrying"); n != fails {
				t.Errorf("%d retry lines logged, want %d:\n%s", n, fails, logs.String())
			}
		})
	}
}

// TestServeEndsOnOtherAcceptErrors: an accept error that will not pass by
// waiting (the listener's descriptor is bad) ends Serve with that error.
func TestServeEndsOnOtherAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	want := acceptError(syscall.EBADF)
	srv := &Server{Log: discardLog(), Handler: http.NotFoundHandler()}
	if err := srv.Serve(&failingListener{Listener: inner, fails: 1, err: want}); err != want {
		t.Errorf("Serve: %v, want %v", err, want)
	}
}

// get fetches url on a new connection, giving up after five seconds.
func get(t *testing.T, url string) (string, error) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
