package gateway

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/latchgw/latch/gateway/config"
)

// gRPC end to end through latch: a grpc-go client speaking HTTP/2 over TLS
// to latch, latch speaking h2c to grpc-go servers. Each call kind, with
// its messages, headers and trailers, as the backend sent them.
func TestGRPCCallKinds(t *testing.T) {
	a := newGRPCBackend(t, "a")
	_, client := startGRPCGateway(t, nil, a)
	checkGRPCCallKinds(t, client)
}

// checkGRPCCallKinds makes each kind of call through client, to a
// gateway whose one backend is "a".
func checkGRPCCallKinds(t *testing.T, client testgrpc.TestServiceClient) {
	t.Helper()
	for _, c := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"unary", func(ctx context.Context) error {
			var header metadata.MD
			resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Header(&header))
			if err != nil {
				return err
			}
			if resp.GetHostname() != "a" || string(resp.GetPayload().GetBody()) != "ping" || first(header["x-backend-id"]) != "a" {
				return errors.New("unary: answer " + resp.String() + ", header x-backend-id " + first(header["x-backend-id"]))
			}
			return nil
		}},
		{"server streaming", func(ctx context.Context) error {
			sizes := []int32{1, 70000, 3, 0, 100000}
			var params []*testgrpc.ResponseParameters
			for _, n := range sizes {
				params = append(params, &testgrpc.ResponseParameters{Size: n})
			}
			s, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
			if err != nil {
				return err
			}
			for i, n := range sizes {
				m, err := s.Recv()
				if err != nil {
					return err
				}
				if len(m.GetPayload().GetBody()) != int(n) {
					return errors.New("server streaming: a message of the wrong size at " + string(rune('0'+i)))
				}
			}
			if _, err := s.Recv(); err != io.EOF {
				return errors.New("server streaming: no clean end after the last message")
			}
			return nil
		}},
		{"client streaming", func(ctx context.Context) error {
			s, err := client.StreamingInputCall(ctx)
			if err != nil {
				return err
			}
			total := 0
			for _, n := range []int{5, 65536, 0, 200000} {
				total += n
				if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
					return err
				}
			}
			resp, err := s.CloseAndRecv()
			if err != nil {
				return err
			}
			if int(resp.GetAggregatedPayloadSize()) != total {
				return errors.New("client streaming: the backend got a different number of bytes")
			}
			return nil
		}},
		{"bidirectional, server speaks first", func(ctx context.Context) error {
			s, err := client.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			// The client sends nothing until the backend's first message
			// arrived: latch must not hold the call waiting for a body.
			m, err := s.Recv()
			if err != nil || string(m.GetPayload().GetBody()) != "a" {
				return errors.New("bidirectional: no first message from the backend")
			}
			for _, n := range []int32{7, 40000, 1} {
				if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: n}}}); err != nil {
					return err
				}
				m, err := s.Recv() // each answer before the next message: both ways at once
				if err != nil {
					return err
				}
				if len(m.GetPayload().GetBody()) != int(n) {
					return errors.New("bidirectional: an answer of the wrong size")
				}
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			if _, err := s.Recv(); err != io.EOF {
				return errors.New("bidirectional: no clean end after the client closed")
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.call(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A backend's status and message reach the client as it sent them, in
// the trailers (or, for an error before any message, in the
// trailers-only response).
func TestGRPCStatusRelayed(t *testing.T) {
	a := newGRPCBackend(t, "a")
	_, client := startGRPCGateway(t, nil, a)
	for _, c := range []struct {
		name string
		code codes.Code
		msg  string
	}{
		{"not found", codes.NotFound, "no such thing"},
		{"permission denied, non-ASCII message", codes.PermissionDenied, "nein, bitte nicht: ü ✓"},
		{"invalid argument", codes.InvalidArgument, "bad %20 input"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(c.code), Message: c.msg}})
			st, _ := status.FromError(err)
			if st.Code() != c.code || st.Message() != c.msg {
				t.Fatalf("got %v %q; want %v %q", st.Code(), st.Message(), c.code, c.msg)
			}
		})
	}
}

// The client's deadline (grpc-timeout) reaches the backend, which sees it
// expire; a call the client cancels ends on the backend too.
func TestGRPCDeadlineAndCancel(t *testing.T) {
	a := newGRPCBackend(t, "a")
	a.block.Store(true)
	_, client := startGRPCGateway(t, nil, a)

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		want, _ := ctx.Deadline()
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v; want DeadlineExceeded", err)
		}
		// The backend's deadline is the client's, carried by grpc-timeout
		// (as time left when sent: a little later, never earlier than
		// the time the call took to arrive allows). Whether the backend's
		// own timer or the client's reset ends the call first is a race.
		got := waitEnded(t, a)
		if got.deadline.IsZero() || got.deadline.Before(want.Add(-100*time.Millisecond)) || got.deadline.After(want.Add(time.Second)) {
			t.Fatalf("backend's deadline %v; want the client's, %v", got.deadline, want)
		}
		if got.err == nil {
			t.Fatal("backend's call did not end")
		}
	})
	t.Run("cancel unary", func(t *testing.T) {
		before := a.calls.Load()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			errc <- err
		}()
		waitUntil(t, "the call to reach the backend", func() bool { return a.calls.Load() > before })
		cancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Fatalf("got %v; want Canceled", err)
		}
		got := waitEnded(t, a)
		if !got.deadline.IsZero() || !errors.Is(got.err, context.Canceled) {
			t.Fatalf("backend's call: deadline %v, ended with %v; want no deadline, canceled", got.deadline, got.err)
		}
	})
	t.Run("cancel stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		got := waitEnded(t, a)
		if !errors.Is(got.err, context.Canceled) {
			t.Fatalf("backend's stream ended with %v; want canceled", got.err)
		}
	})
}

func waitEnded(t *testing.T, b *grpcBackend) blockedCall {
	t.Helper()
	select {
	case got := <-b.ended:
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's call did not end")
		return blockedCall{}
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// The breaker counts a backend's gRPC status, not only its HTTP status:
// UNAVAILABLE is a failure (it maps to 503, in breaker.failure_status by
// default) whether it comes in a trailers-only answer or in the trailers
// after the messages; NOT_FOUND is the caller's business. With one
// backend and its breaker open after 3 failures, the 4th call gets
// latch's own 503 instead of reaching the backend.
func TestGRPCStatusFeedsBreaker(t *testing.T) {
	for _, c := range []struct {
		name     string
		code     codes.Code
		stream   bool // a server stream: the status comes in the trailers
		wantOpen bool
	}{
		{"unavailable, trailers-only", codes.Unavailable, false, true},
		{"unavailable, trailers after messages", codes.Unavailable, true, true},
		{"internal, trailers-only (500 not in failure_status)", codes.Internal, false, false},
		{"not found", codes.NotFound, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newGRPCBackend(t, "a")
			a.fail.Store(uint32(c.code))
			_, client := startGRPCGateway(t, func(cfg *config.Config) {
				cfg.Routes[0].Breaker.ConsecutiveFailures = config.Set(uint32(3))
				cfg.Routes[0].Breaker.OpenTimeout = config.Set(time.Hour)
			}, a)
			call := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if !c.stream {
					_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
					return err
				}
				s, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}})
				if err != nil {
					return err
				}
				for {
					if _, err := s.Recv(); err != nil {
						return err
					}
				}
			}
			for i := range 3 {
				if st, _ := status.FromError(call()); st.Code() != c.code || st.Message() != "backend a failing" {
					t.Fatalf("call %d: %v %q; want the backend's %v", i, st.Code(), st.Message(), c.code)
				}
			}
			st, _ := status.FromError(call())
			byLatch := st.Code() == codes.Unavailable && strings.Contains(st.Message(), "503")
			if byLatch != c.wantOpen || (c.wantOpen && a.calls.Load() != 3) {
				t.Fatalf("4th call: %v %q after %d calls reached the backend; want the breaker open: %v", st.Code(), st.Message(), a.calls.Load(), c.wantOpen)
			}
		})
	}
}

// gRPC clients keep no cookie jar: without a session key each call is a
// new session and calls balance over the backends; a backend that shuts
// down takes no more calls, and none fails (nothing was sent to it: the
// dial is refused, and the call goes to another backend).
func TestGRPCBalanceAndFailover(t *testing.T) {
	a, b, c := newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c")
	_, client := startGRPCGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
	}, a, b, c)
	calls := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			seen[resp.GetHostname()]++
		}
		return seen
	}
	if seen := calls(30); seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("30 calls went %v; want 10 to each backend", seen)
	}
	// A backend shutting down says so (GOAWAY) before it closes its
	// connections; GracefulStop returns once latch acknowledged it. (A
	// backend that vanishes without a word leaves a window in which a call
	// may still be written to its dead connection: that call fails, as
	// the README says, since a call that may have reached a backend is not
	// sent again unless its method is marked idempotent.)
	b.srv.GracefulStop()
	if seen := calls(30); seen["b"] != 0 || seen["a"]+seen["c"] != 30 {
		t.Fatalf("with b stopped, 30 calls went %v; want all to a and c", seen)
	}
}

// backend_protocol h2: HTTP/2 negotiated by ALPN over the route's
// backend_tls, to gRPC servers with TLS credentials; a server stream as
// the witness that it is HTTP/2 end to end.
func TestGRPCOverBackendTLS(t *testing.T) {
	backendCA := newTestCA(t)
	a := newGRPCBackend(t, "a", grpcTLS(t, backendCA))
	_, client := startGRPCGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].BackendProtocol = config.Set(config.ProtocolH2)
		cfg.Routes[0].BackendTLS = config.BackendTLS{Enabled: config.Set(true), CAFile: config.Set(backendCA.caFile(t))}
	}, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}, {Size: 70000}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 70000} {
		m, err := s.Recv()
		if err != nil || len(m.GetPayload().GetBody()) != n {
			t.Fatalf("message of %d bytes: got %d, %v", n, len(m.GetPayload().GetBody()), err)
		}
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v; want a clean end", err)
	}
	if a.calls.Load() != 1 {
		t.Fatalf("the backend took %d calls; want 1", a.calls.Load())
	}
}

// A backend's UNAVAILABLE (trailers-only: it answered nothing else) goes
// to another backend only when the call may be repeated: gRPC calls are
// all POST, so only a method named in retry.idempotent_paths is; any
// other call gets the backend's UNAVAILABLE, as it got there. A backend
// that sent its headers first committed the call, as gRPC's own retry
// design (A6) has it: its status reaches the client.
func TestGRPCUnavailableRetriedWhenIdempotent(t *testing.T) {
	const method = "/grpc.testing.TestService/UnaryCall"
	for _, c := range []struct {
		name         string
		idempotent   []string
		headersFirst bool // a sends its headers before its status: the call is committed
		wantFailed   int  // of 4 calls, round robin over a (failing) and b
	}{
		{"not marked", nil, false, 2},
		{"another method marked", []string{"/grpc.testing.TestService/EmptyCall"}, false, 2},
		{"marked idempotent", []string{method}, false, 0},
		{"marked idempotent, headers sent first", []string{method}, true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newGRPCBackend(t, "a"), newGRPCBackend(t, "b")
			a.fail.Store(uint32(codes.Unavailable))
			a.headersFirst.Store(c.headersFirst)
			_, client := startGRPCGateway(t, func(cfg *config.Config) {
				cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
				cfg.Routes[0].Retry.IdempotentPaths = config.Set(config.List(c.idempotent))
			}, a, b)
			failed := 0
			for i := range 4 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("call body")}})
				cancel()
				switch st, _ := status.FromError(err); {
				case err == nil && (resp.GetHostname() != "b" || string(resp.GetPayload().GetBody()) != "call body"):
					t.Fatalf("call %d: answer %v; want b's echo of the body", i, resp)
				case err != nil && (st.Code() != codes.Unavailable || st.Message() != "backend a failing"):
					t.Fatalf("call %d: %v; want a's own UNAVAILABLE", i, err)
				case err != nil:
					failed++
				}
			}
			// Every call b answered reached it once: a call a failed went
			// to b, or to nobody else.
			if failed != c.wantFailed || b.calls.Load() != int64(4-failed) {
				t.Fatalf("%d of 4 calls failed, a took %d, b %d; want %d failed, the others answered by b", failed, a.calls.Load(), b.calls.Load(), c.wantFailed)
			}
		})
	}
}

// A backend that dies in the middle of a stream: the client's stream ends
// with UNAVAILABLE (latch's trailers), not the INTERNAL of a reset
// stream, and the backend's breaker counts the failure.
func TestGRPCBackendDiesMidStream(t *testing.T) {
	a := newGRPCBackend(t, "a")
	a.block.Store(true)
	_, client := startGRPCGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].Breaker.ConsecutiveFailures = config.Set(uint32(1))
		cfg.Routes[0].Breaker.OpenTimeout = config.Set(time.Hour)
	}, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	a.srv.Stop() // closes its connections: the stream is cut
	_, err = s.Recv()
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "latch") {
		t.Fatalf("stream after the backend died: %v; want latch's UNAVAILABLE", err)
	}
	// One failure opened the breaker: the next call is refused by latch
	// (503), not sent to a dead backend.
	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "503") {
		t.Fatalf("next call: %v; want latch's 503 (breaker open)", err)
	}
}
