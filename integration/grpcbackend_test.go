package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/latchgw/latch/integration/harness"
)

// The gRPC backend as a process of its own (TestGRPCTable kills one with
// SIGKILL mid-stream): the test binary run again with grpcBackendEnv set
// serves grpc.testing's TestService and grpc.health.v1 instead of running
// tests (TestMain).

const grpcBackendEnv = "LATCH_TEST_GRPC_BACKEND" // "ID ADDR [FAIL]": FAIL "unavailable" fails every call so

func TestMain(m *testing.M) {
	if spec := os.Getenv(grpcBackendEnv); spec != "" {
		os.Exit(serveGRPCBackend(spec))
	}
	os.Exit(m.Run())
}

// startGRPCProcess runs a gRPC backend process listening on a free port
// and returns it and its address.
func startGRPCProcess(t *testing.T, id string, failing bool) (*harness.Process, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	spec := id + " " + addr
	if failing {
		spec += " unavailable"
	}
	p := harness.StartProcessEnv(t, []string{grpcBackendEnv + "=" + spec}, os.Args[0], "-test.run=^$")
	harness.WaitFor(t, 10*time.Second, id+" listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p, addr
}

func serveGRPCBackend(spec string) int {
	f := strings.Fields(spec)
	if len(f) < 2 {
		fmt.Fprintln(os.Stderr, grpcBackendEnv+": want ID ADDR [unavailable]")
		return 2
	}
	lis, err := net.Listen("tcp", f[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &procBackend{id: f[0], failing: len(f) > 2 && f[2] == "unavailable"})
	healthgrpc.RegisterHealthServer(srv, health.NewServer())
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// procBackend is TestService as TestGRPCTable checks it: every message's
// payload is pattern(i, size), so either end can check each byte.
type procBackend struct {
	testgrpc.UnimplementedTestServiceServer
	id      string
	failing bool
}

// pattern is message i's payload of size bytes.
func pattern(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*7 + j*13)
	}
	return b
}

func (s *procBackend) fail() error {
	if s.failing {
		return grpcstatus.Error(codes.Unavailable, s.id+" unavailable")
	}
	return nil
}

// UnaryCall answers with its id, a payload of ResponseSize, or the status
// ResponseStatus names; with x-block metadata it waits for the call's end
// (its deadline, or its cancellation).
func (s *procBackend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := s.fail(); err != nil {
		return nil, err
	}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-block")) > 0 {
		<-ctx.Done()
		return nil, grpcstatus.FromContextError(ctx.Err()).Err()
	}
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, grpcstatus.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Hostname: s.id, Payload: &testgrpc.Payload{Body: pattern(0, int(req.GetResponseSize()))}}, nil
}

// StreamingOutputCall sends a message per ResponseParameters, each after
// its interval.
func (s *procBackend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	if err := s.fail(); err != nil {
		return err
	}
	_ = stream.SendHeader(metadata.Pairs("x-backend-id", s.id))
	for i, p := range req.GetResponseParameters() {
		time.Sleep(time.Duration(p.GetIntervalUs()) * time.Microsecond)
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: pattern(i, int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall checks every message against pattern and answers
// with their total size (DATA_LOSS on a wrong byte).
func (s *procBackend) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	if err := s.fail(); err != nil {
		return err
	}
	total := 0
	for i := 0; ; i++ {
		m, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
			}
			return err
		}
		body := m.GetPayload().GetBody()
		if !bytes.Equal(body, pattern(i, len(body))) {
			return grpcstatus.Errorf(codes.DataLoss, "message %d: bytes differ", i)
		}
		total += len(body)
	}
}

// FullDuplexCall echoes each message's payload as it comes.
func (s *procBackend) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	if err := s.fail(); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}
