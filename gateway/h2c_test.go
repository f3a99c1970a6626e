package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/config"
)

// implementations are the public listener's servers (server.implementation).
var implementations = []string{"h1", "net/http"}

// startH2CGateway returns a start function for checkGRPCSticky and the
// like: a plain gateway on implementation impl with server.h2c on, whose
// route speaks h2c to its backends, and a grpc-go client of it speaking
// HTTP/2 with prior knowledge (insecure credentials).
func startH2CGateway(impl string) func(testing.TB, func(*config.Config), ...*grpcBackend) (*testGateway, testgrpc.TestServiceClient) {
	return func(t testing.TB, mutate func(*config.Config), backends ...*grpcBackend) (*testGateway, testgrpc.TestServiceClient) {
		t.Helper()
		var list []discovery.Backend
		for _, b := range backends {
			list = append(list, b.backend())
		}
		tg := startGatewayWith(t, func(c *config.Config) {
			c.Server.Implementation = impl
			c.Server.H2C = true
			c.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
			if mutate != nil {
				mutate(c)
			}
		}, nil, list)
		return tg, h2cClient(t, tg)
	}
}

// h2cClient is a grpc-go client of tg speaking h2c.
func h2cClient(t testing.TB, tg *testGateway) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(strings.TrimPrefix(tg.url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// gRPC over h2c through latch (server.h2c): each call kind, and sessions
// sticky on a metadata header, on both implementations; HTTP/1.1 still
// served on the same listener.
func TestH2CGRPC(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl, func(t *testing.T) {
			t.Run("call kinds", func(t *testing.T) {
				a := newGRPCBackend(t, "a")
				tg, client := startH2CGateway(impl)(t, nil, a)
				checkGRPCCallKinds(t, client)
				// HTTP/1.1 on the same listener reaches the same route.
				resp, err := http.Get(tg.url + "/grpc.testing.TestService/UnaryCall")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				// grpc-go refuses a GET, in HTTP/1.1 through latch.
				if resp.ProtoMajor != 1 || resp.Header.Get("Grpc-Status") == "" {
					t.Fatalf("an HTTP/1.1 request: %s %s %v; want the backend's answer in HTTP/1.1", resp.Proto, resp.Status, resp.Header)
				}
			})
			t.Run("sticky on a header", func(t *testing.T) { checkGRPCSticky(t, startH2CGateway(impl)) })
		})
	}
}

// Off by default: a gRPC client speaking h2c to a latch without
// server.h2c is refused at once (an HTTP/1.1 505, which grpc-go reports
// as an HTTP/1.1 answer), not left waiting for its deadline.
func TestH2COffRefused(t *testing.T) {
	a := newGRPCBackend(t, "a")
	for _, impl := range implementations {
		t.Run(impl, func(t *testing.T) {
			tg := startGatewayWith(t, func(c *config.Config) {
				c.Server.Implementation = impl
				c.Routes[0].BackendProtocol = config.Set(config.ProtocolH2C)
			}, nil, []discovery.Backend{a.backend()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := h2cClient(t, tg).UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(false))
			took := time.Since(start)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "HTTP/1.1") {
				t.Fatalf("call without server.h2c: %v; want Unavailable, an HTTP/1.1 answer", err)
			}
			t.Logf("refused in %v: %v", took, err)
			if a.calls.Load() != 0 {
				t.Fatalf("the backend got %d calls", a.calls.Load())
			}

			// What a client reading the answer sees.
			resp, body := rawRoundTrip(t, tg, h2cPreface)
			if resp.StatusCode != http.StatusHTTPVersionNotSupported || !resp.Close {
				t.Fatalf("answer to the preface: %s %q (close %t); want 505 and close", resp.Status, body, resp.Close)
			}
			t.Logf("answer to the preface: %s %q", resp.Status, body)
		})
	}
}

// Upgrade: h2c (RFC 7540 §3.2) is not served, with server.h2c or
// without: the request (a POST with its body) is answered in HTTP/1.1,
// and the backend gets no Upgrade or HTTP2-Settings. Forwarded, the
// upgrade would let a backend that honours it switch latch's relayed
// connection to HTTP/2, whose later streams latch never sees (h2c
// smuggling).
func TestH2CUpgradeNotForwarded(t *testing.T) {
	seen := make(chan string, 8)
	b := &testBackend{id: "a", srv: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- r.Header.Get("Upgrade") + "|" + r.Header.Get("Http2-Settings") + "|" + string(body)
		_, _ = io.WriteString(w, "ok")
	}))}
	t.Cleanup(b.srv.Close)
	for _, h2c := range []bool{false, true} {
		for _, impl := range implementations {
			t.Run(impl+map[bool]string{false: "", true: " h2c"}[h2c], func(t *testing.T) {
				tg := startGateway(t, func(c *config.Config) {
					c.Server.Implementation = impl
					c.Server.H2C = h2c
				}, b)
				const req = "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
					"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
				resp, got := rawRoundTrip(t, tg, req)
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || string(got) != "ok" {
					t.Fatalf("answer %s %s %q; want 200 in HTTP/1.1", resp.Proto, resp.Status, got)
				}
				if s := <-seen; s != "||hello" {
					t.Fatalf("the backend got Upgrade|HTTP2-Settings|body = %q; want \"||hello\"", s)
				}
			})
		}
	}
}

// rawRoundTrip writes data on a new connection to tg and reads one
// response, and its body.
func rawRoundTrip(t *testing.T, tg *testGateway, data string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(tg.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// server.h2c on h1 with no connection cap (server.max_connections: 0):
// tlsserve.SplitServer was handed a nil cap in a non-nil interface, and
// the first connection's Admit dereferenced it; the listener serves.
func TestH2CWithoutConnectionCaps(t *testing.T) {
	tg := startGateway(t, func(c *config.Config) {
		c.Server.H2C = true
		c.Server.MaxConnections = config.Set(0)
	}, newBackend(t, "a"))
	if _, status, _ := tg.get(t, "/", ""); status != 200 {
		t.Fatalf("status %d; want 200", status)
	}
}
