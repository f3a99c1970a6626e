package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/session"
)

// gatedSource is a Static source whose watches start only once open is
// closed: Consul down at start.
type gatedSource struct {
	*discovery.Static
	open chan struct{}
}

func (s gatedSource) Watch(ctx context.Context, service string, update func(discovery.Snapshot)) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.open:
	}
	return s.Static.Watch(ctx, service, update)
}

// Issue 12: /readyz says what it waits for, and the stale series exist (1)
// before Consul ever answered.
func TestReadyWaitsForDiscovery(t *testing.T) {
	b := newBackend(t, "b1")
	src := gatedSource{Static: discovery.NewStatic(map[string][]discovery.Backend{"web": {b.backend()}}), open: make(chan struct{})}
	get := startReadyGateway(t, config.Discovery{}, src)
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "service web") {
		t.Fatalf("readyz before discovery: %d %q; want 503 naming service web", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`latch_discovery_stale{service="web"} 1`, `latch_discovery_last_fresh_timestamp_seconds{service="web"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics before discovery lack %q", want)
		}
	}
	close(src.open)
	waitUntil(t, "ready", func() bool { code, _ := get("/readyz"); return code == 200 })
	if _, metrics = get("/metrics"); !strings.Contains(metrics, `latch_discovery_stale{service="web"} 0`) {
		t.Fatal("stale gauge not cleared by the first snapshot")
	}
}

// Ready waits for Consul's first health answer too: a check starts
// critical until it has run, and a snapshot of backends that are all
// unchecked serves nothing (docker compose up --wait returned while the
// README's first curl got 503). A backend whose check answered, even
// failing, makes the service ready: it is what Consul knows.
func TestReadyWaitsForAFirstCheck(t *testing.T) {
	src, b, get := startUnchecked(t, config.Discovery{})
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "service web") {
		t.Fatalf("readyz with every backend unchecked: %d %q; want 503 naming service web", code, body)
	}
	checked := b.backend()
	checked.Health = discovery.Critical // answered, failing
	src.Set("web", []discovery.Backend{checked})
	waitUntil(t, "ready once a check answered", func() bool { code, _ := get("/readyz"); return code == 200 })
}

// A check that never answers (a TTL check nobody updates, or one a
// restarted agent restored critical) holds readiness back for
// discovery.first_check_wait, not for ever.
func TestReadyAfterFirstCheckWait(t *testing.T) {
	const wait = 700 * time.Millisecond
	_, _, get := startUnchecked(t, config.Discovery{FirstCheckWait: config.Set(wait)})
	applied := time.Now()
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("readyz with every backend unchecked: %d; want 503 for %v", code, wait)
	}
	waitUntil(t, "ready after first_check_wait", func() bool { code, _ := get("/readyz"); return code == 200 })
	// The snapshot was applied before `applied`, so the wait may look a
	// little shorter from here, never by more than the time to read
	// /metrics once.
	if took := time.Since(applied); took < wait-200*time.Millisecond {
		t.Fatalf("ready %v after the snapshot; want about %v", took, wait)
	}
}

// startUnchecked runs a gateway whose one service has one backend whose
// check has not answered, and returns once that snapshot is applied:
// the source (to change it), the backend, and a GET on the admin
// listener.
func startUnchecked(t *testing.T, d config.Discovery) (*discovery.Static, *testBackend, func(path string) (int, string)) {
	t.Helper()
	b := newBackend(t, "b1")
	unchecked := b.backend()
	unchecked.Health, unchecked.Unchecked = discovery.Critical, true
	src := discovery.NewStatic(map[string][]discovery.Backend{"web": {unchecked}})
	get := startReadyGateway(t, d, src)
	// The snapshot has arrived when the stale gauge is cleared by it.
	waitUntil(t, "the first snapshot applied", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, `latch_discovery_stale{service="web"} 0`)
	})
	return src, b, get
}

// startReadyGateway runs a gateway whose one route "web" (Consul off)
// takes its backends from src, with discovery settings d, until the test
// ends, and returns a GET on its admin listener.
func startReadyGateway(t *testing.T, d config.Discovery, src discovery.Source) func(path string) (int, string) {
	t.Helper()
	cfg, err := config.Config{Routes: []config.Route{{Service: "web", Backends: config.List{"127.0.0.1:1"}}},
		Consul: config.Consul{Disabled: true}, Discovery: d, Log: config.Log{Access: config.Set(false)}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	aff := session.NewAffinity(session.Options{Store: session.NewMemoryStore(100, nil), Codec: testCodec(t), Logger: log})
	g, err := New(cfg, Deps{Logger: log, Source: src, Affinity: aff})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := net.Listen("tcp", "127.0.0.1:0")
	adm, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, pub, adm) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := "http://" + adm.Addr().String()
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}
