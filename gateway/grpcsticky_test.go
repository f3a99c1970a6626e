package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/latchgw/latch/gateway/config"
)

// sticky.header: gRPC clients keep no cookies, but send metadata. Keyed on
// x-session-id, a session's calls all reach one backend (round robin
// would spread them), other sessions are placed by the policy, and when
// the session's backend stops, the next call re-pins it once and the
// calls after stay on the new backend.
func TestGRPCStickyOnHeader(t *testing.T) {
	checkGRPCSticky(t, startGRPCGateway)
}

// checkGRPCSticky is TestGRPCStickyOnHeader through a gateway start runs.
func checkGRPCSticky(t *testing.T, start func(testing.TB, func(*config.Config), ...*grpcBackend) (*testGateway, testgrpc.TestServiceClient)) {
	t.Helper()
	a, b, c := newGRPCBackend(t, "a"), newGRPCBackend(t, "b"), newGRPCBackend(t, "c")
	byID := map[string]*grpcBackend{"a": a, "b": b, "c": c}
	_, client := start(t, func(cfg *config.Config) {
		cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
		cfg.Routes[0].Sticky.Header = config.Set("x-session-id")
	}, a, b, c)
	call := func(session string) (string, metadata.MD) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if session != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-session-id", session)
		}
		var header metadata.MD
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&header))
		if err != nil {
			t.Fatalf("call of session %q: %v", session, err)
		}
		return resp.GetHostname(), header
	}
	seen := map[string]map[string]int{}
	for i := range 60 {
		s := []string{"s1", "s2", "s3"}[i%3]
		got, header := call(s)
		if len(header["set-cookie"]) != 0 {
			t.Fatalf("session %s got a cookie: %v", s, header["set-cookie"])
		}
		if seen[s] == nil {
			seen[s] = map[string]int{}
		}
		seen[s][got]++
	}
	for s, by := range seen {
		if len(by) != 1 {
			t.Fatalf("session %s went to %v; want one backend for all its 20 calls", s, by)
		}
	}
	plain := map[string]bool{}
	for range 6 {
		got, _ := call("")
		plain[got] = true
	}
	if len(plain) != 3 {
		t.Fatalf("calls without the header went to %v; want balanced over all 3", plain)
	}

	first, _ := call("s1")
	byID[first].srv.GracefulStop() // GOAWAY first (see TestGRPCBalanceAndFailover)
	moved, _ := call("s1")
	if moved == first {
		t.Fatalf("s1 still on %s, which stopped", first)
	}
	for i := range 20 {
		if got, _ := call("s1"); got != moved {
			t.Fatalf("call %d after the re-pin went to %s; want %s, where s1 was re-pinned", i, got, moved)
		}
	}
}

// sticky.header works for HTTP/1.1 clients too: an API whose clients send
// a session header and keep no cookie.
func TestStickyOnHeaderHTTP(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	tg := startGateway(t, func(cfg *config.Config) {
		cfg.Routes[0].Policy = config.Set(config.List{"round_robin"})
		cfg.Routes[0].Sticky.Header = config.Set("X-Api-Session")
	}, a, b, c)
	get := func(session string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tg.url+"/", nil)
		if session != "" {
			req.Header.Set("X-Api-Session", session)
		}
		resp, err := tg.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header["Set-Cookie"] != nil {
			t.Fatalf("status %d, Set-Cookie %v; want 200 and no cookie", resp.StatusCode, resp.Header["Set-Cookie"])
		}
		return resp.Header.Get("X-Backend-Id")
	}
	for _, s := range []string{"k1", "k2", "k3", "k4"} {
		want := get(s)
		for i := range 9 {
			if got := get(s); got != want {
				t.Fatalf("session %s: request %d went to %s; want %s", s, i, got, want)
			}
		}
	}
}
