package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/latchgw/latch/gateway/config"
)

// health_check.kind grpc: latch asks each backend's grpc.health.v1 over
// the route's h2c, takes a NOT_SERVING backend out, and back once it
// serves again.
func TestGRPCHealthCheck(t *testing.T) {
	a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
	for _, be := range []*grpcBackend{a, b} {
		be.health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	}
	_, client := startGRPCGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
		cfg.Routes[0].HealthCheck = config.HealthCheck{Kind: config.Set(config.CheckGRPC), GRPCService: config.Set("grpc.testing.TestService"),
			Interval: config.Set(100 * time.Millisecond), Timeout: config.Set(100 * time.Millisecond),
			HealthyThreshold: config.Set(1), UnhealthyThreshold: config.Set(1)}
		cfg.Routes[0].PanicThreshold = config.Set(-1.0)
	}, a, b)
	// spread is where 4 calls in a row went.
	spread := func() map[string]int {
		seen := map[string]int{}
		for range 4 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			seen[resp.GetHostname()]++
		}
		return seen
	}
	waitUntil(t, "both backends serving", func() bool { s := spread(); return s["a"] > 0 && s["b"] > 0 })
	b.health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_NOT_SERVING)
	waitUntil(t, "b out after NOT_SERVING", func() bool { return spread()["a"] == 4 })
	if s := spread(); s["a"] != 4 {
		t.Fatalf("b NOT_SERVING: calls went %v; want all to a", s)
	}
	b.health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	waitUntil(t, "b back once serving", func() bool { return spread()["b"] > 0 })
}

// A reload that changes a route's backend_protocol changes its requests'
// at once, but the running health checks speak the protocol they started
// with: the reload says a restart is needed for them.
func TestReloadBackendProtocolNeedsRestartForChecks(t *testing.T) {
	a := newBackend(t, "a")
	rl := startReloadable(t, func(cfg *config.Config) {
		cfg.Routes[0].HealthCheck.Path = config.Set("/healthz")
	}, a)
	code, res, body := rl.reload(t, func(cfg *config.Config) {
		cfg.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
	})
	want := []string{"health_check of service web (backend_protocol)"}
	if code != 200 || !slices.Equal(res.NeedsRestart, want) {
		t.Fatalf("reload to h2c: %d %s; want needs_restart %q", code, body, want)
	}
	if code, res, body := rl.reload(t, nil); code != 200 || len(res.NeedsRestart) != 0 {
		t.Fatalf("reload back to h1: %d %s; want needs_restart []", code, body)
	}
}
