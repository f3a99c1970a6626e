package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/internal/recorder"
	"github.com/latchgw/latch/session"
)

// Issue 13: access-log lines of the requests that finish during shutdown
// were lost: the batch writer stopped before them. Run stops it last.
func TestAccessLogKeepsShutdownRequests(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/inflight" {
			close(arrived)
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer be.Close()
	cc, err := config.Config{Routes: []config.Route{{Service: "web", Backends: config.List{"127.0.0.1:1"}}},
		Consul: config.Consul{Disabled: true}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	static := discovery.NewStatic(nil)
	static.Set("web", []discovery.Backend{{ID: "a", Service: "web", Addr: strings.TrimPrefix(be.URL, "http://"),
		Weight: 1, Health: discovery.Passing}})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := &recorder.Writes{}
	g, err := New(cc, Deps{Logger: log, Source: static, AccessLog: out,
		Affinity: session.NewAffinity(session.Options{Store: session.NewMemoryStore(100, nil), Codec: testCodec(t), Logger: log})})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, pub, nil) }()
	waitUntil(t, "gateway ready", g.Ready)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	got := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + pub.Addr().String() + "/inflight")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-arrived
	cancel() // shutdown starts with the request in flight
	waitUntil(t, "the listener closed by the shutdown", func() bool {
		c, err := net.Dial("tcp", pub.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if all := strings.Join(out.All(), ""); !strings.Contains(all, "/inflight") {
		t.Fatalf("access log after shutdown:\n%s\nwant the in-flight request's line", all)
	}
}

// Issue 13: per-backend Prometheus series were never deleted when a
// backend left.
func TestMetricsForgetBackendsThatLeave(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tg := startGateway(t, func(c *config.Config) { c.Defaults.Policy = config.Set(config.List{"round_robin"}) }, a, b)
	for range 4 {
		tg.get(t, "/", "")
	}
	series := func(id string) int {
		mfs, err := tg.g.metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "backend" && l.GetValue() == id {
						n++
					}
				}
			}
		}
		return n
	}
	if series("b") == 0 {
		t.Fatal("no series for backend b after its requests")
	}
	tg.static.Set("web", []discovery.Backend{a.backend()})
	waitUntil(t, "backend b's series deleted", func() bool { return series("b") == 0 })
	if series("a") == 0 {
		t.Fatal("backend a's series deleted too")
	}
}
