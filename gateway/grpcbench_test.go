package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/latchgw/latch/integration/procstat"
)

// Unary gRPC calls through latch (TLS from the client, h2c to the
// backend) next to the same calls straight to the backend (h2c), and,
// when Debian's haproxy is installed, through HAProxy the same way (TLS
// from the client, h2c to the backend): the cost of the hop per call.
// ns/op is a call's wall time on one client goroutine; client, latch and
// backend share the process, so B/op and allocs/op count all three
// (direct and haproxy: client and backend). cpu-µs/call is the CPU time
// (user + system) of the process over the loop per call, HAProxy's own
// process added in its row: the three rows bill the same work, client and
// backend included, plus the proxy's.
func BenchmarkGRPCUnary(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		be := newGRPCBackend(b, "a")
		cc, err := grpc.NewClient(be.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, testgrpc.NewTestServiceClient(cc), 0)
	})
	b.Run("latch", func(b *testing.B) {
		_, client := startGRPCGateway(b, nil, newGRPCBackend(b, "a"))
		runUnary(b, client, 0)
	})
	b.Run("haproxy", func(b *testing.B) {
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			b.Skip("haproxy is not on PATH (make bench-tools installs Debian's): no HAProxy row")
		}
		ca := newTestCA(b)
		addr, pid := startGRPCHAProxy(b, bin, ca, newGRPCBackend(b, "a").lis.Addr().String())
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool})))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		client := testgrpc.NewTestServiceClient(cc)
		waitGRPC(b, client)
		runUnary(b, client, pid)
	})
}

// runUnary makes unary calls through client for the benchmark's loop and
// reports the CPU time per call of this process, and of process pid (0:
// none) when the proxy is another process.
func runUnary(b *testing.B, client testgrpc.TestServiceClient, pid int) {
	ctx := context.Background()
	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 100)}}
	cpu := func() time.Duration {
		d := cpuTime()
		if pid != 0 {
			s, err := procstat.Read(pid)
			if err != nil {
				b.Fatal(err)
			}
			d += s.CPU
		}
		return d
	}
	b.ReportAllocs()
	start := cpu()
	for b.Loop() {
		if _, err := client.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpu()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/call")
}

// startGRPCHAProxy runs haproxy at its packaged defaults (no nbthread:
// a thread per core; no tuning) with the minimal gRPC recipe: TLS with
// ALPN h2 from the client, "proto h2" (h2c) to the backend. It returns
// the address to call and haproxy's PID.
func startGRPCHAProxy(b *testing.B, bin string, ca *testCA, backend string) (string, int) {
	dir := b.TempDir()
	certPEM, keyPEM, _ := ca.issue(b, "127.0.0.1")
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(b, bundle, append(certPEM, keyPEM...))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s
frontend fe
    bind %s ssl crt %s alpn h2
    default_backend grpc
backend grpc
    server a %s proto h2
`, addr, bundle, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	writeFile(b, path, []byte(cfg))
	log, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting haproxy: %v", err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	return addr, cmd.Process.Pid
}

// waitGRPC waits until a unary call through client succeeds (the proxy
// is up), for 10 seconds at most.
func waitGRPC(b *testing.B, client testgrpc.TestServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		b.Fatalf("no answer through the proxy in 10s: %v", err)
	}
}
