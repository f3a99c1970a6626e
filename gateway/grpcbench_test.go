package gateway

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Unary gRPC calls through latch (TLS from the client, h2c to the
// backend) next to the same calls straight to the backend (h2c): the cost
// of the hop per call. ns/op is a call's wall time on one client
// goroutine; client, latch and backend share the process, so B/op and
// allocs/op count all three (direct: client and backend).
func BenchmarkGRPCUnary(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		be := newGRPCBackend(b, "a")
		cc, err := grpc.NewClient(be.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, testgrpc.NewTestServiceClient(cc))
	})
	b.Run("latch", func(b *testing.B) {
		_, client := startGRPCGateway(b, nil, newGRPCBackend(b, "a"))
		runUnary(b, client)
	})
}

func runUnary(b *testing.B, client testgrpc.TestServiceClient) {
	ctx := context.Background()
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 100)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
