//go:build unix

package gateway

import (
	"context"
	"crypto/sha256"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness/netns"
)

// peekPreface reads the socket itself (MSG_PEEK, waiting on the poller
// between peeks): over a real link, from a client behind veth with 4 KiB
// buffers that dribbles its first bytes one at a time and stalls inside
// the preface, it sorts each connection right and leaves every byte for
// the server it hands it to, checked end to end.
func TestPeekPrefaceOverVeth(t *testing.T) {
	hosts := netns.StartHosts(t, 1)
	client := hosts.Hosts[0]
	client.Buffers(t, 4096, 4096)
	ln := netns.Listen(t, nil, hosts.Gateway+":0", netns.SockOpts{RcvBuf: 4096})
	payload := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB after the first bytes
	for _, tc := range []struct {
		name  string
		first string
		h2    bool
	}{
		{"HTTP/2 preface", h2cPreface, true},
		{"HTTP/1.1 request", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"HTTP/1 that starts like the preface", "PRI * HTTP/1.1\r\nHost: h\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := tc.first + payload
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nc, err := client.Dial(ctx, ln.Addr().String(), netns.SockOpts{SndBuf: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c := netns.Paced(nc, netns.Pace{}, netns.Pace{Chunk: 1, Pause: 200 * time.Microsecond,
				Budget: int64(len(tc.first)), Stalls: []int64{10}, StallFor: 50 * time.Millisecond})
			go func() {
				_, _ = io.WriteString(c, sent)
				_ = nc.(interface{ CloseWrite() error }).CloseWrite()
			}()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			_ = sc.SetDeadline(time.Now().Add(20 * time.Second))
			h2, err := peekPreface(sc)
			if err != nil || h2 != tc.h2 {
				t.Fatalf("peekPreface = %v, %v; want %v", h2, err, tc.h2)
			}
			got, err := io.ReadAll(sc)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(sent) || sha256.Sum256(got) != sha256.Sum256([]byte(sent)) {
				t.Fatalf("the server read %d bytes (first %q); the client sent %d (first %q)",
					len(got), got[:min(len(got), 30)], len(sent), sent[:30])
			}
		})
	}
}
