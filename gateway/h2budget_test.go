package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/latchgw/latch/gateway/config"
)

// Issue 23, item 1: 8 HTTP/2 connections of 250 streams each, every
// stream a POST announcing a body it never sent, held ~1,900 backend
// connections until the client left. Now a connection may open
// server.max_concurrent_streams (100) streams, no stream takes a backend
// connection before its body starts, and each gets 408 after
// server.body_timeout.
func TestHTTP2StreamsWaitingForBodies(t *testing.T) {
	var backendConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			backendConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	b := &testBackend{id: "a", srv: srv}

	ca := newTestCA(t)
	for _, impl := range []string{"h1", "net/http"} {
		t.Run(impl, func(t *testing.T) {
			backendConns.Store(0)
			tg := startTLSGateway(t, ca, impl, true, func(c *config.Config) {
				c.Server.BodyTimeout = config.Set(300 * time.Millisecond)
			}, b)
			addr := tg.url[len("https://"):]

			// What the server announces.
			tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, NextProtos: []string{"h2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(tc, tc)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			sf, ok := f.(*http2.SettingsFrame)
			if !ok {
				t.Fatalf("first frame %v; want SETTINGS", f)
			}
			if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 100 {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (set %t); want 100", v, ok)
			}

			// 150 streams whose bodies never come.
			const streams = 150
			var wg sync.WaitGroup
			codes := make(chan int, streams)
			pipes := make([]*io.PipeWriter, streams)
			for i := range streams {
				pr, pw := io.Pipe()
				pipes[i] = pw
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodPost, tg.url+fmt.Sprintf("/up/%d", i), pr)
					req.ContentLength = 10
					resp, err := tg.client.Do(req)
					if err != nil {
						codes <- 0
						return
					}
					resp.Body.Close()
					codes <- resp.StatusCode
				})
			}
			wg.Wait()
			for _, pw := range pipes {
				pw.Close()
			}
			close(codes)
			got := map[int]int{}
			for c := range codes {
				got[c]++
			}
			if got[http.StatusRequestTimeout] != streams {
				t.Fatalf("statuses %v; want %d × 408", got, streams)
			}
			if n := backendConns.Load(); n != 0 {
				t.Fatalf("%d backend connections for requests whose bodies never came; want 0", n)
			}
		})
	}
}
