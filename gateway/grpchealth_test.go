package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/latchgw/latch/gateway/config"
)

// The hand-written messages of grpchealth.go are protobuf's own encoding.
func TestGRPCHealthMessages(t *testing.T) {
	for _, service := range []string{"", "shop.Cart", string(make([]byte, 300))} {
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		if got := grpcCheckRequest(service); !bytes.Equal(got[5:], want) || binary.BigEndian.Uint32(got[1:5]) != uint32(len(want)) || got[0] != 0 {
			t.Fatalf("request for %q: % x; want the message % x", service, got, want)
		}
	}
	frame := func(msg []byte) []byte {
		out := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		return append(out, msg...)
	}
	for _, c := range []struct {
		name string
		body []byte
		want uint64
	}{
		{"serving", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})), 1},
		{"not serving", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})), 2},
		{"service unknown", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVICE_UNKNOWN})), 3},
		{"unknown (the zero value: an empty message)", frame(nil), 0},
		{"a newer field skipped", frame(append(mustMarshal(t, &healthpb.HealthCheckResponse{Status: 1}), 0x12, 2, 'h', 'i')), 1},
		{"compressed flag", append([]byte{1}, frame([]byte{8, 1})[1:]...), 0},
		{"length past the body", []byte{0, 0, 0, 0, 9, 8, 1}, 0},
		{"truncated varint", frame([]byte{8}), 0},
		{"short", []byte{0, 0}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := grpcServingStatus(c.body); got != c.want {
				t.Fatalf("status %d; want %d", got, c.want)
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
