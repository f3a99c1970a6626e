package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// BenchmarkLeastSessions is issue 26's cost of least_sessions on the
// request path, against p2c (today's default) in the same run: the whole
// handler over 4 backends (in-memory pipes answering a canned response),
// for new sessions (no cookie: every request is balanced) and sticky ones
// (10,000 pinned sessions' cookies in rotation). The session store is a
// memory store that counts its calls: store-calls/op is every store call
// made during the timed loop, from any goroutine, per request (a Redis
// round trip each, with Redis); count-reads/s is the background refresh's
// reads of the live-session counts (Sessions), per second of the loop.
//
//	go test -run '^$' -bench BenchmarkLeastSessions -benchmem ./gateway/
func BenchmarkLeastSessions(b *testing.B) {
	for _, pol := range []string{"p2c", "least_sessions"} {
		for _, sticky := range []bool{false, true} {
			name := pol + "/new"
			if sticky {
				name = pol + "/sticky"
			}
			b.Run(name, func(b *testing.B) { benchPolicy(b, pol, sticky) })
		}
	}
}

func benchPolicy(b *testing.B, pol string, sticky bool) {
	const nSessions = 10_000
	list := pipeBackends(4)
	store := newBlockingStore(b)
	affinity := session.NewAffinity(session.Options{Store: store, Codec: testCodec(b),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tg := startGatewayWith(b, func(c *config.Config) {
		c.Routes[0].Policy = config.Set(config.List{pol})
	}, affinity, list)
	dialPipes(tg)

	var cookies []string
	if sticky {
		codec := affinity.Codec()
		ttl := firstRoute(tg.g).Spec().Route().Sticky.TTL.Get()
		now := uint32(time.Now().Unix())
		for i := range nSessions {
			id := session.NewID()
			be := list[i%len(list)].ID
			if _, err := affinity.Pin(context.Background(), "web", id, be, ttl); err != nil {
				b.Fatal(err)
			}
			cookies = append(cookies, "latch="+codec.Encode(session.Cookie{ID: id, Hint: session.HintFor("web", be), Issued: now}))
		}
	}
	h := tg.g.Handler()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	serve := func(i int) {
		if sticky {
			req.Header["Cookie"] = cookies[i%len(cookies) : i%len(cookies)+1]
		}
		delete(req.Header, "X-Request-Id")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || (w.Header().Get("Set-Cookie") == "") == !sticky {
			b.Fatalf("status %d, Set-Cookie %q: want 200, a cookie for a new session only", w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	for i := range nSessions { // warm the connection pools
		serve(i)
	}
	runtime.GC() // the setup's garbage is not the requests' cost
	calls, counts := store.calls.Load(), store.counts.Load()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		serve(i)
	}
	b.ReportMetric(float64(store.calls.Load()-calls)/float64(b.N), "store-calls/op")
	b.ReportMetric(float64(store.counts.Load()-counts)/b.Elapsed().Seconds(), "count-reads/s")
}
