package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// grpcBackend is a grpc-go server speaking cleartext HTTP/2 (h2c), as
// gRPC services registered in Consul do, serving grpc.testing's
// TestService: it counts its calls and names itself in the response
// headers (x-backend-id) and in each message.
type grpcBackend struct {
	testgrpc.UnimplementedTestServiceServer
	id    string
	srv   *grpc.Server
	lis   net.Listener
	calls atomic.Int64
	// block: UnaryCall waits for its context to end and reports how it
	// ended (its deadline, as the client set it, and its error) on ended.
	block atomic.Bool
	ended chan blockedCall
	// fail, when set, is the gRPC code every call ends with: a unary call
	// at once (a trailers-only answer), a server stream after its
	// messages (in the trailers).
	fail         atomic.Uint32
	headersFirst atomic.Bool
	// health is the backend's grpc.health.v1 service.
	health *health.Server
}

func (b *grpcBackend) failure() error {
	if c := codes.Code(b.fail.Load()); c != codes.OK {
		return status.Error(c, "backend "+b.id+" failing")
	}
	return nil
}

type blockedCall struct {
	deadline time.Time // zero: none
	err      error
}

func newGRPCBackend(t testing.TB, id string, opts ...grpc.ServerOption) *grpcBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{id: id, srv: grpc.NewServer(opts...), lis: lis, ended: make(chan blockedCall, 16)}
	testgrpc.RegisterTestServiceServer(b.srv, b)
	b.health = health.NewServer()
	healthgrpc.RegisterHealthServer(b.srv, b.health)
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	return b
}

func (b *grpcBackend) backend() discovery.Backend {
	return discovery.Backend{ID: b.id, Service: "web", Addr: b.lis.Addr().String(), Weight: 1, Health: discovery.Passing}
}

// hello counts a call and names the backend in the response's header
// metadata; not when the call is to fail, unless headersFirst: a failure
// before any header is a trailers-only answer.
func (b *grpcBackend) hello(ctx context.Context) {
	b.calls.Add(1)
	if b.fail.Load() == 0 || b.headersFirst.Load() {
		_ = grpc.SendHeader(ctx, metadata.Pairs("x-backend-id", b.id))
	}
}

func (b *grpcBackend) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.hello(ctx)
	if b.block.Load() {
		<-ctx.Done()
		d, _ := ctx.Deadline()
		b.ended <- blockedCall{deadline: d, err: ctx.Err()}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err := b.failure(); err != nil {
		return nil, err
	}
	if s := in.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	return &testgrpc.SimpleResponse{Hostname: b.id, Payload: in.GetPayload()}, nil
}

// StreamingOutputCall sends a message per response parameter, of its
// size; with block set it then stays open until the call ends.
func (b *grpcBackend) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	b.hello(s.Context())
	for _, p := range in.GetResponseParameters() {
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if b.block.Load() {
		<-s.Context().Done() // a stream that stays open
		return s.Context().Err()
	}
	return b.failure()
}

// StreamingInputCall answers the total size of the payloads it received.
func (b *grpcBackend) StreamingInputCall(s grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	b.hello(s.Context())
	total := 0
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

// FullDuplexCall answers each message as it comes, with a payload of the
// size it asks for; it sends a first message of its own before it reads
// any (a client may wait for the server to speak first).
func (b *grpcBackend) FullDuplexCall(s grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	b.hello(s.Context())
	if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(b.id)}}); err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			b.ended <- blockedCall{err: s.Context().Err()}
			return err
		}
		for _, p := range m.GetResponseParameters() {
			if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// startGRPCGateway runs a gateway serving TLS (HTTP/2 by ALPN, as gRPC
// clients need) whose route speaks h2c to backends, and a grpc-go client
// of it trusting the test CA.
func startGRPCGateway(t testing.TB, mutate func(*config.Config), backends ...*grpcBackend) (*testGateway, testgrpc.TestServiceClient) {
	t.Helper()
	ca := newTestCA(t)
	var list []discovery.Backend
	for _, b := range backends {
		list = append(list, b.backend())
	}
	tg := startGatewayWith(t, func(c *config.Config) {
		c.TLS.Certificates = []config.Certificate{ca.files(t, "default", "127.0.0.1")}
		c.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
		if mutate != nil {
			mutate(c)
		}
	}, nil, list)
	tg.client = ca.client(true)
	cc, err := grpc.NewClient(tg.url[len("https://"):],
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return tg, testgrpc.NewTestServiceClient(cc)
}

// grpcTLS is the server option of a gRPC backend speaking TLS (h2 by
// ALPN) with a certificate of ca's for 127.0.0.1.
func grpcTLS(t testing.TB, ca *testCA) grpc.ServerOption {
	t.Helper()
	certPEM, keyPEM, _ := ca.issue(t, "127.0.0.1")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return grpc.Creds(credentials.NewServerTLSFromCert(&cert))
}
