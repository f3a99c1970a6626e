package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// grpcServer is a grpc-go backend on loopback: grpc.testing's
// TestService answering with its id, and grpc.health.v1, which Consul's
// GRPC check asks. Every call names the backend in its header metadata
// (x-backend-id). A call whose metadata has x-block waits for its context
// to end and reports how it ended on ended (when set); fail, when set, is
// the code every call ends with.
type grpcServer struct {
	testgrpc.UnimplementedTestServiceServer
	id    string
	srv   *grpc.Server
	lis   net.Listener
	calls atomic.Int64
	fail  atomic.Uint32
	ended chan endedCall
}

// endedCall is how a blocked call ended, as its backend saw it.
type endedCall struct {
	deadline time.Time // zero: none
	err      error
}

func startGRPCServer(t *testing.T, id string) *grpcServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcServer{id: id, srv: grpc.NewServer(), lis: lis}
	testgrpc.RegisterTestServiceServer(s.srv, s)
	healthgrpc.RegisterHealthServer(s.srv, health.NewServer()) // "" SERVING
	go func() { _ = s.srv.Serve(lis) }()
	t.Cleanup(s.srv.Stop)
	return s
}

// begin counts a call, names the backend, and returns the call's failure
// (nil: none); with x-block it first waits for the call to end.
func (s *grpcServer) begin(ctx context.Context) error {
	s.calls.Add(1)
	if c := codes.Code(s.fail.Load()); c != codes.OK {
		return grpcstatus.Error(c, "backend "+s.id+" failing")
	}
	_ = grpc.SendHeader(ctx, metadata.Pairs("x-backend-id", s.id))
	if md, _ := metadata.FromIncomingContext(ctx); len(md["x-block"]) > 0 {
		return s.blocked(ctx)
	}
	return nil
}

// blocked waits for the call of ctx to end and reports how it ended.
func (s *grpcServer) blocked(ctx context.Context) error {
	<-ctx.Done()
	d, _ := ctx.Deadline()
	if s.ended != nil {
		s.ended <- endedCall{deadline: d, err: ctx.Err()}
	}
	return grpcstatus.FromContextError(ctx.Err()).Err()
}

// UnaryCall echoes the payload, or ends with the status asked for.
func (s *grpcServer) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if st := in.GetResponseStatus(); st != nil {
		return nil, grpcstatus.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Hostname: s.id, Payload: in.GetPayload()}, nil
}

// StreamingOutputCall sends a message per response parameter, of its
// size, then blocks (x-block) or ends with the status asked for.
func (s *grpcServer) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	_ = st.SendHeader(metadata.Pairs("x-backend-id", s.id))
	for _, p := range in.GetResponseParameters() {
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if md, _ := metadata.FromIncomingContext(st.Context()); len(md["x-block"]) > 0 {
		return s.blocked(st.Context())
	}
	if rs := in.GetResponseStatus(); rs != nil {
		return grpcstatus.Error(codes.Code(rs.GetCode()), rs.GetMessage())
	}
	return nil
}

// StreamingInputCall answers the total size of the payloads it received.
func (s *grpcServer) StreamingInputCall(st grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	s.calls.Add(1)
	total := 0
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

// FullDuplexCall answers each message as it comes, with a payload of the
// size it asks for.
func (s *grpcServer) FullDuplexCall(st grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range m.GetResponseParameters() {
			if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// registerGRPC registers s in Consul with a GRPC check.
func registerGRPC(t *testing.T, c *harness.Consul, s *grpcServer, service string) {
	t.Helper()
	registerGRPCAddr(t, c, s.id, s.lis.Addr().String(), service)
}

// gRPC through two latch replicas over a real Consul (GRPC checks) and a
// real Redis: the calls of a session keyed on x-session-id metadata reach
// one backend through either replica; when that backend dies, Consul's
// check turns critical and the session is re-pinned once, to one new
// backend both replicas agree on, with no needless move after.
func TestGRPCThroughConsul(t *testing.T) {
	c := harness.StartConsul(t)
	r := harness.StartRedis(t)
	servers := map[string]*grpcServer{}
	for i := 1; i <= 3; i++ {
		s := startGRPCServer(t, fmt.Sprintf("grpc-%d", i))
		servers[s.id] = s
		registerGRPC(t, c, s, "orders")
	}

	ca, pair := certPair(t)
	cfg := harness.LatchConfig(c.HTTPAddr, r.URL, "orders")
	cfg.TLS.Certificates = []config.Certificate{pair}
	cfg.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
	cfg.Routes[0].Sticky.Header = config.Set("x-session-id")
	replicas := []*harness.Latch{harness.StartLatch(t, cfg), harness.StartLatch(t, cfg)}

	clients := make([]testgrpc.TestServiceClient, len(replicas))
	for i, l := range replicas {
		cc, err := grpc.NewClient(l.URL[len("https://"):], grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		clients[i] = testgrpc.NewTestServiceClient(cc)
	}
	call := func(i int, session string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-session-id", session)
		resp, err := clients[i%len(clients)].UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return resp.GetHostname(), err
	}
	harness.WaitFor(t, 15*time.Second, "calls through both replicas", func() bool {
		_, err0 := call(0, "warm-up")
		_, err1 := call(1, "warm-up")
		return err0 == nil && err1 == nil
	})

	first, err := call(0, "session-1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		got, err := call(i, "session-1")
		if err != nil || got != first {
			t.Fatalf("call %d (replica %d): %s, %v; want %s for every call of the session", i, i%2, got, err, first)
		}
	}
	t.Logf("100 calls of session-1 through 2 replicas: all on %s", first)

	servers[first].srv.Stop()
	waitCheckCritical(t, c, "orders", first)
	moved, err := call(0, "session-1")
	if err != nil || moved == first {
		t.Fatalf("after %s died: %s, %v; want another backend", first, moved, err)
	}
	moves := 0
	last := moved
	for i := range 100 {
		got, err := call(i+1, "session-1")
		if err != nil {
			t.Fatalf("call %d after the re-pin: %v", i, err)
		}
		if got != last {
			moves++
			last = got
		}
	}
	t.Logf("%s died: session-1 re-pinned once to %s, then %d needless moves in 100 calls through 2 replicas", first, moved, moves)
	if moves != 0 {
		t.Fatalf("%d needless moves after the re-pin; want 0", moves)
	}
}

// waitCheckCritical waits until Consul's check of service's backend id is
// critical.
func waitCheckCritical(t *testing.T, c *harness.Consul, service, id string) {
	t.Helper()
	harness.WaitFor(t, 15*time.Second, "Consul's check of "+id+" critical", func() bool {
		checks, _, err := c.Client(t).Health().Checks(service, nil)
		for _, ch := range checks {
			if err == nil && ch.ServiceID == id {
				return ch.Status == api.HealthCritical
			}
		}
		return false
	})
}
