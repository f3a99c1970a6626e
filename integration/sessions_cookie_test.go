package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
	"github.com/latchgw/latch/session"
)

// Issue 17's session findings: one cookie shared by two routes, an unpin
// the cookie's hint undid, and cookie-less traffic that grew Redis.

// staticLatch is a latch config on Redis at redisURL without Consul, each
// route's service served by the given switchable backends.
func staticLatch(redisURL string, routes map[string][]*switchable) config.Config {
	cfg := harness.LatchConfig("", redisURL, "")
	cfg.Consul.Disabled = true
	cfg.Routes = nil
	for prefix, backends := range routes {
		r := config.Route{Service: backends[0].id[:strings.IndexByte(backends[0].id, '-')], PathPrefix: prefix}
		for _, b := range backends {
			r.Backends = append(r.Backends, b.addr())
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	return cfg
}

func switchables(t *testing.T, service string, n int) []*switchable {
	out := make([]*switchable, n)
	for i := range out {
		out[i] = startSwitchable(t, fmt.Sprintf("%s-%d", service, i+1))
	}
	return out
}

// sessionOf decodes a latch cookie value's session id.
func sessionOf(t *testing.T, value string) (session.ID, bool) {
	t.Helper()
	c, err := session.NewCodec([][]byte{[]byte(harness.CookieSecret)})
	if err != nil {
		t.Fatal(err)
	}
	ck, ok := c.Decode(value)
	return ck.ID, ok
}

// getWith GETs u with latch's cookie set to cookie ("" = none) and returns
// the backend and the cookie value it sets ("" = none).
func getWith(t *testing.T, client *http.Client, u, cookie string) (backend, set string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if cookie != "" {
		req.Header.Set("Cookie", "latch="+cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "latch" {
			set = c.Value
		}
	}
	return resp.Header.Get("X-Backend-Id"), set
}

// Two routes of two services share the default cookie (latch, Path=/).
// Redis loses everything (FLUSHALL); a replica that never saw the sessions
// still sends each to its backend on both routes, from the cookie alone.
func TestTwoRoutesOneCookieSurviveFlush(t *testing.T) {
	redis := harness.StartRedis(t)
	cfg := staticLatch(redis.URL, map[string][]*switchable{"/": switchables(t, "web", 3), "/api": switchables(t, "api", 3)})
	a := harness.StartLatch(t, cfg)
	const clients = 200
	type seen struct{ web, api string }
	was := make([]seen, clients)
	cs := make([]*http.Client, clients)
	for i := range cs {
		cs[i] = harness.Client()
		// Both routes, in turn, twice: each reissue of the shared cookie
		// comes from the other route.
		for range 2 {
			w, _ := backendOf(t, cs[i], a.URL+"/")
			p, _ := backendOf(t, cs[i], a.URL+"/api/x")
			if was[i] != (seen{}) && was[i] != (seen{w, p}) {
				t.Fatalf("client %d moved on replica a: %v then %v", i, was[i], seen{w, p})
			}
			was[i] = seen{w, p}
		}
	}
	rc := redis.Client(t)
	defer rc.Close()
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	b := harness.StartLatch(t, cfg)
	movedWeb, movedAPI := 0, 0
	for i, c := range cs {
		c = withCookiesFor(c, a.URL, b.URL)
		if w, _ := backendOf(t, c, b.URL+"/"); w != was[i].web {
			movedWeb++
		}
		if p, _ := backendOf(t, c, b.URL+"/api/x"); p != was[i].api {
			movedAPI++
		}
	}
	t.Logf("after FLUSHALL, on a fresh replica: %d of %d sessions moved on /, %d on /api", movedWeb, clients, movedAPI)
	if movedWeb != 0 || movedAPI != 0 {
		t.Fatalf("%d of %d sessions moved on /, %d on /api; want 0: each route's hint is in the shared cookie", movedWeb, clients, movedAPI)
	}
}

// DELETE /admin/sessions/{id} on one replica ends the session on both:
// neither restores it from the cookie's hint, now or later.
func TestUnpinWinsOverHintOnEveryReplica(t *testing.T) {
	redis := harness.StartRedis(t)
	cfg := staticLatch(redis.URL, map[string][]*switchable{"/": switchables(t, "web", 3)})
	a, b := harness.StartLatch(t, cfg), harness.StartLatch(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second}
	backend, cookie := getWith(t, client, a.URL+"/", "")
	old, ok := sessionOf(t, cookie)
	if !ok {
		t.Fatalf("latch cookie %q does not decode", cookie)
	}
	// Both replicas know it: b from the hint (and pins it), a from its cache.
	for _, l := range []*harness.Latch{b, a, b} {
		if got, _ := getWith(t, client, l.URL+"/", cookie); got != backend {
			t.Fatalf("session on %s, then %s", backend, got)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, a.AdminURL+"/admin/sessions/"+url.PathEscape(cookie), nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("unpin: %v %v", err, resp)
	}
	resp.Body.Close()
	// ended reports whether l answers the old cookie with a new session.
	ended := func(l *harness.Latch) bool {
		_, set := getWith(t, client, l.URL+"/", cookie)
		id, ok := sessionOf(t, set)
		return ok && id != old
	}
	if !ended(a) {
		t.Fatal("the replica that unpinned restored the session from the cookie's hint")
	}
	// The other replica hears of it through the store's invalidations.
	harness.WaitFor(t, 5*time.Second, "the other replica to end the unpinned session", func() bool { return ended(b) })
	for i := range 10 {
		if l := []*harness.Latch{a, b}[i%2]; !ended(l) {
			t.Fatalf("request %d with the unpinned cookie restored the session", i)
		}
		if st := adminSessionStatus(t, []*harness.Latch{a, b}[i%2].AdminURL, cookie, "store"); st != 404 {
			t.Fatalf("admin lookup of the unpinned session: %d; want 404", st)
		}
	}
}

// cookielessFlood sends n requests without a cookie through a latch on a
// fresh Redis, then one session's second request, and reports Redis's
// session keys, all keys and the bytes used (used_memory growth) once that
// returning session's pin is in Redis (jobs run in order: every earlier
// write has landed by then).
func cookielessFlood(tb testing.TB, n int) (sessionKeys, keys, bytes int64) {
	redis := harness.StartRedis(tb)
	backends := make([]*switchable, 3)
	for i := range backends {
		backends[i] = startSwitchable(tb, fmt.Sprintf("web-%d", i+1))
	}
	l := harness.StartLatch(tb, staticLatch(redis.URL, map[string][]*switchable{"/": backends}))
	rc := redis.Client(tb)
	defer rc.Close()
	ctx := context.Background()
	before := redis.UsedMemory(tb)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				resp, err := client.Get(l.URL + "/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		tb.Fatalf("%d of %d cookie-less requests failed", failed.Load(), n)
	}
	// One session comes back: its pin is written, behind every earlier job.
	resp, err := client.Get(l.URL + "/")
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "latch" {
			cookie = c.Value
		}
	}
	req, _ := http.NewRequest(http.MethodGet, l.URL+"/", nil)
	req.Header.Set("Cookie", "latch="+cookie)
	if resp, err = client.Do(req); err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	count := func() int64 {
		var k int64
		iter := rc.Scan(ctx, 0, "l:web:*", 1000).Iterator()
		for iter.Next(ctx) {
			k++
		}
		return k
	}
	harness.WaitFor(tb, 10*time.Second, "the returning session's pin in Redis", func() bool { return count() >= 1 })
	keys, _ = rc.DBSize(ctx).Result()
	return count(), keys, redis.UsedMemory(tb) - before
}

// Issue 17: a session costs Redis nothing until it comes back; a flood of
// cookie-less requests leaves only the one session that returned.
func TestCookielessRequestsCostRedisNothing(t *testing.T) {
	const n = 20_000
	sessions, keys, bytes := cookielessFlood(t, n)
	t.Logf("after %d cookie-less requests and 1 returning session: %d session keys, %d keys in all, %d bytes", n, sessions, keys, bytes)
	if sessions != 1 {
		t.Fatalf("%d session keys in Redis after %d cookie-less requests and one session that returned; want 1", sessions, n)
	}
}

// BenchmarkCookielessRedis: Redis keys and bytes after b.N cookie-less
// requests (make bench runs it with -benchtime 1000000x).
func BenchmarkCookielessRedis(b *testing.B) {
	sessions, keys, bytes := cookielessFlood(b, b.N)
	b.ReportMetric(float64(sessions-1), "never-returned-keys")
	b.ReportMetric(float64(keys), "redis-keys")
	b.ReportMetric(float64(bytes), "redis-bytes")
}
