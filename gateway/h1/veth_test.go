package h1

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness/netns"
)

// Issue 22 over a real link: a client in a network namespace behind veth,
// with 4 KiB socket buffers, dribbles pipelined requests (heads to 60 KiB,
// bodies to 2 MiB by length and chunked) and reads 4 MiB answers slowly;
// the server's socket has a 4 KiB send buffer, so every response write
// comes back short. Byte for byte, both ways.
func TestPushBackOverVeth(t *testing.T) {
	hosts := netns.StartHosts(t, 1)
	client := hosts.Hosts[0]
	client.Buffers(t, 4096, 4096)
	const answer = 4 << 20
	srv := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Digest", fmt.Sprintf("%x %x", sha256.Sum256([]byte(r.Header.Get("X-Big"))), h.Sum(nil)))
		w.Header().Set("Content-Length", fmt.Sprint(answer))
		chunk := []byte(strings.Repeat("0123456789abcdef", 4096))
		for n := 0; n < answer; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})}
	ln := netns.Listen(t, nil, hosts.Gateway+":0", netns.SockOpts{SndBuf: 4096})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := client.Dial(ctx, ln.Addr().String(), netns.SockOpts{RcvBuf: 4096, SndBuf: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	dribble := netns.Pace{Chunk: 512, Pause: 50 * time.Microsecond, Budget: 128 << 10, Stalls: []int64{30 << 10}, StallFor: 50 * time.Millisecond}
	slowRead := netns.Pace{Chunk: 2048, Pause: 50 * time.Microsecond, Budget: 256 << 10}
	c := netns.Paced(nc, slowRead, dribble)

	type sent struct{ big, body string }
	var reqs []sent
	var wire strings.Builder
	for i, tc := range []struct {
		head, body int
		chunked    bool
	}{{60 << 10, 0, false}, {1 << 10, 2 << 20, false}, {30 << 10, 1 << 20, true}, {1, 0, false}} {
		s := sent{strings.Repeat("b", tc.head), strings.Repeat(fmt.Sprintf("%x", i), tc.body)}
		reqs = append(reqs, s)
		fmt.Fprintf(&wire, "POST /%d HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n", i, s.big)
		switch {
		case tc.chunked:
			fmt.Fprintf(&wire, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(s.body), s.body)
		default:
			fmt.Fprintf(&wire, "Content-Length: %d\r\n\r\n%s", len(s.body), s.body)
		}
	}
	go func() { _, _ = io.WriteString(c, wire.String()) }() // pipelined
	wantAnswer := fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Repeat("0123456789abcdef", answer/16))))
	br := bufio.NewReader(c)
	for i, s := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || n != answer {
			t.Fatalf("answer %d: %d of %d body bytes: %v", i, n, answer, err)
		}
		want := fmt.Sprintf("%x %x", sha256.Sum256([]byte(s.big)), sha256.Sum256([]byte(s.body)))
		if resp.StatusCode != 200 || resp.Header.Get("X-Digest") != want {
			t.Fatalf("answer %d: %d, the server read other bytes than the client sent", i, resp.StatusCode)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != wantAnswer {
			t.Fatalf("answer %d: the client read other bytes than the server wrote", i)
		}
	}
}

// The watcher's hang-up check on parked connections (a MSG_PEEK for the
// end of the stream) over a real link: clients in a network namespace
// behind veth hang up parked connections, which the watcher closes with
// no goroutine, and a request whose bytes and FIN come in separate
// segments is still answered.
func TestParkedHangUpOverVeth(t *testing.T) {
	hosts := netns.StartHosts(t, 1)
	client := hosts.Hosts[0]
	client.Buffers(t, 4096, 4096)
	parkedHangUp(t, func(srv *Server) string {
		srv.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		ln := netns.Listen(t, nil, hosts.Gateway+":0", netns.SockOpts{SndBuf: 4096})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-served })
		return ln.Addr().String()
	}, func(addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return client.Dial(ctx, addr, netns.SockOpts{RcvBuf: 4096, SndBuf: 4096})
	})
}
