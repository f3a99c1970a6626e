package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// Issue 27's rows TestGRPCTable leaves out, through the built latch binary
// with server.h2c (gRPC clients without TLS), speaking h2c to 3 grpc-go
// backends registered in a real Consul with GRPC checks, sessions in a
// real Redis keyed on x-session-id: trailers after messages, the deadline
// as the backend sees it, cancellation both ways, UNAVAILABLE retried on
// an idempotent path (and the breaker it opens), and a CONTINUATION
// flood over h2c, the process's memory before and after.
func TestGRPCH2CTable(t *testing.T) {
	const unary = "/grpc.testing.TestService/UnaryCall"
	c, r := harness.StartConsul(t), harness.StartRedis(t)
	ended := make(chan endedCall, 16)
	servers := map[string]*grpcServer{}
	var ids []string
	for i := 1; i <= 3; i++ {
		s := startGRPCServer(t, fmt.Sprintf("grpc-%d", i))
		s.ended = ended
		servers[s.id], ids = s, append(ids, s.id)
		registerGRPC(t, c, s, "orders")
	}
	cfg := harness.LatchConfig(c.HTTPAddr, r.URL, "orders")
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	cfg.Listen, cfg.Admin.Listen = addr, "127.0.0.1:"+strconv.Itoa(harness.FreePort(t))
	cfg.Server.H2C = true
	cfg.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
	cfg.Routes[0].Sticky.Header = config.Set("x-session-id")
	cfg.Routes[0].Retry.IdempotentPaths = config.Set(config.List{unary})
	cfg.Routes[0].Breaker.ConsecutiveFailures = config.Set(uint32(3))
	cfg.Routes[0].Breaker.OpenTimeout = config.Set(time.Minute)
	l := harness.StartLatchProcess(t, nil, cfg)

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := testgrpc.NewTestServiceClient(cc)
	ctxFor := func(session string, d time.Duration, md ...string) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		if session != "" {
			md = append(md, "x-session-id", session)
		}
		return metadata.AppendToOutgoingContext(ctx, md...), cancel
	}
	call := func(session string) (string, error) {
		ctx, cancel := ctxFor(session, 5*time.Second)
		defer cancel()
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return resp.GetHostname(), err
	}
	harness.WaitFor(t, 20*time.Second, "every backend reached through latch", func() bool {
		seen := map[string]bool{}
		for range 20 {
			if id, err := call(""); err == nil {
				seen[id] = true
			}
		}
		return len(seen) == len(ids)
	})

	var rows []string
	defer func() { t.Log("\n| case | outcome |\n|---|---|\n" + strings.Join(rows, "\n") + "\n") }()
	row := func(name string, err error, figures string) {
		verdict := "ok: " + figures
		if err != nil {
			verdict = "FAILED: " + err.Error() + " (" + figures + ")"
			t.Errorf("%s: %v", name, err)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s |", name, verdict))
	}

	// Trailers: a status and message from the backend, after messages
	// and before any.
	{
		ctx, cancel := ctxFor("", 5*time.Second)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "précondition: ünmet"}})
		st := grpcstatus.Convert(err)
		var e error
		if st.Code() != codes.FailedPrecondition || st.Message() != "précondition: ünmet" {
			e = fmt.Errorf("got %v %q", st.Code(), st.Message())
		}
		ss, _ := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}},
			ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.Aborted), Message: "after one"}})
		n := 0
		var serr error
		for serr == nil {
			if _, serr = ss.Recv(); serr == nil {
				n++
			}
		}
		st2 := grpcstatus.Convert(serr)
		if e == nil && (n != 1 || st2.Code() != codes.Aborted || st2.Message() != "after one") {
			e = fmt.Errorf("stream: %d messages then %v %q", n, st2.Code(), st2.Message())
		}
		row("trailers relayed", e, fmt.Sprintf("trailers-only %v %q; after %d message %v %q", st.Code(), st.Message(), n, st2.Code(), st2.Message()))
		cancel()
	}

	// A deadline: the backend sees it (grpc-timeout relayed), the client
	// gets DEADLINE_EXCEEDED.
	{
		start := time.Now()
		ctx, cancel := ctxFor("", 400*time.Millisecond, "x-block", "1")
		clientDeadline, _ := ctx.Deadline()
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		took := time.Since(start)
		got := <-ended
		var e error
		// The backend's call ends at its deadline or, a moment before,
		// when latch resets its stream on the client's leaving: either
		// way it ended. Its deadline is the client's, give or take the
		// time grpc-timeout took to reach it (each hop sends the time
		// left, and the receiver adds it to its own clock).
		skew := got.deadline.Sub(clientDeadline)
		if grpcstatus.Code(err) != codes.DeadlineExceeded || got.deadline.IsZero() || skew.Abs() > 250*time.Millisecond || got.err == nil {
			e = fmt.Errorf("client %v, backend deadline %v ended %v", err, got.deadline, got.err)
		}
		row("deadline 400 ms", e, fmt.Sprintf("client %v after %v; the backend's deadline %v from the client's, its call ended by %v",
			grpcstatus.Code(err), took.Round(time.Millisecond), skew.Round(100*time.Microsecond), got.err))
	}

	// Cancellation, client to backend: the client cancels a call the
	// backend holds; the backend's call ends with context.Canceled.
	{
		ctx, cancel := ctxFor("", 10*time.Second, "x-block", "1")
		ss, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}})
		if err == nil {
			_, err = ss.Recv() // the backend holds the call
		}
		start := time.Now()
		cancel()
		var got endedCall
		select {
		case got = <-ended:
		case <-time.After(10 * time.Second):
			got.err = errors.New("never ended")
		}
		if err == nil && !errors.Is(got.err, context.Canceled) {
			err = fmt.Errorf("backend's call ended by %v", got.err)
		}
		row("cancel, client → backend", err, fmt.Sprintf("backend's call ended by %v, %v after the client cancelled", got.err, time.Since(start).Round(10*time.Microsecond)))
	}
	// Cancellation, backend to client: the backend cancels the call
	// after a message; the client gets CANCELLED and its message.
	{
		ctx, cancel := ctxFor("", 5*time.Second)
		ss, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}},
			ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.Canceled), Message: "backend cancelled"}})
		n := 0
		for err == nil {
			if _, err = ss.Recv(); err == nil {
				n++
			}
		}
		cancel()
		st := grpcstatus.Convert(err)
		var e error
		if n != 1 || st.Code() != codes.Canceled || st.Message() != "backend cancelled" {
			e = fmt.Errorf("%d messages then %v", n, err)
		}
		row("cancel, backend → client", e, fmt.Sprintf("%d message, then %v %q", n, st.Code(), st.Message()))
	}

	// UNAVAILABLE retried on another backend (the method is in
	// idempotent_paths), and the breaker opening on it.
	{
		bad := servers[ids[0]]
		bad.fail.Store(uint32(codes.Unavailable))
		before := bad.calls.Load()
		failed, others := 0, 0
		for range 30 {
			id, err := call("")
			if err != nil {
				failed++
			} else if id != bad.id {
				others++
			}
		}
		tried := bad.calls.Load() - before
		var e error
		if failed != 0 || tried == 0 {
			e = fmt.Errorf("%d of 30 failed; %s tried %d times", failed, bad.id, tried)
		}
		row("UNAVAILABLE retried (idempotent path)", e, fmt.Sprintf("30 calls, %d failed, %d answered by the others; %s answered UNAVAILABLE %d times", failed, others, bad.id, tried))

		state := metricValue(t, l.Admin, `latch_breaker_state{backend="`+bad.id+`",service="orders"}`)
		mid := bad.calls.Load()
		for range 30 {
			_, _ = call("")
		}
		after := bad.calls.Load() - mid
		e = nil
		if state != 2 || after != 0 {
			e = fmt.Errorf("breaker state %v, %d calls reached %s after", state, after, bad.id)
		}
		row("breaker opens on UNAVAILABLE", e, fmt.Sprintf("latch_breaker_state %v (2 = open) after %d UNAVAILABLE; 30 more calls, %d reached it", state, tried, after))
		bad.fail.Store(0)
	}

	// h2c abuse, on the public listener: the process answers after each,
	// its memory bounded.
	rss := func() int64 { return costOf(t, l.PID(), l.Admin, nil).rss }
	alive := func() error {
		_, err := call("")
		return err
	}
	{
		base := rss()
		a := dialH2C(t, addr)
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for i := range 30 {
			_ = enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-f%d", i), Value: strings.Repeat("v", 30)})
		}
		frag := buf.Bytes()
		a.mu.Lock()
		err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag, EndHeaders: false})
		sent := len(frag)
		for n := 0; err == nil && n < 20000; n++ {
			err = a.fr.WriteContinuation(1, false, frag)
			sent += len(frag)
		}
		a.mu.Unlock()
		closed := waitClosed(a.done, 10*time.Second)
		peak := rss()
		e := alive()
		if e == nil && !closed {
			e = errors.New("connection still open")
		}
		row("h2c CONTINUATION flood", e, fmt.Sprintf("%d KB of one header block sent before the write failed; connection closed by latch %v; RSS %.1f → %.1f MB", sent>>10, closed, mb(base), mb(peak)))
	}
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
