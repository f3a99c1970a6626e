package forward

import (
	"net/http"
	"testing"
)

func TestGRPCAnswer(t *testing.T) {
	for _, c := range []struct {
		ct   string
		want bool
	}{
		{"application/grpc", true},
		{"application/grpc+proto", true},
		{"application/grpc;charset=utf-8", true},
		{"application/grpc-web", false}, // grpc-web's statuses are in the body
		{"application/grpcx", false},
		{"text/plain", false},
		{"", false},
	} {
		t.Run(c.ct, func(t *testing.T) {
			if got := grpcAnswer(http.Header{"Content-Type": {c.ct}}); got != c.want {
				t.Fatalf("grpcAnswer(%q) = %v; want %v", c.ct, got, c.want)
			}
		})
	}
}

func TestGRPCHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		name, grpc string
		want       int
	}{
		{"ok", "0", 0},
		{"cancelled: the client left", "1", 0},
		{"unknown", "2", 500},
		{"invalid argument", "3", 0},
		{"deadline exceeded: the client's deadline", "4", 0},
		{"not found", "5", 0},
		{"resource exhausted", "8", 429},
		{"unimplemented", "12", 501},
		{"internal", "13", 500},
		{"unavailable", "14", 503},
		{"data loss", "15", 500},
		{"unauthenticated", "16", 0},
		{"garbage", "x", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := grpcHTTPStatus(c.grpc); got != c.want {
				t.Fatalf("grpcHTTPStatus(%q) = %d; want %d", c.grpc, got, c.want)
			}
		})
	}
}
