package forward

import (
	"net/http"
	"testing"
	"time"
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

func TestGRPCExpired(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		name, v string
		after   time.Duration
		want    bool
	}{
		{"none", "", time.Hour, false},
		{"ms, not yet", "300m", 299 * time.Millisecond, false},
		{"ms, passed", "300m", 300 * time.Millisecond, true},
		{"seconds", "2S", 3 * time.Second, true},
		{"hours, not yet", "1H", 59 * time.Minute, false},
		{"micro", "1500u", 2 * time.Millisecond, true},
		{"nano", "10n", time.Microsecond, true},
		{"unknown unit", "10x", time.Hour, false},
		{"too many digits", "123456789S", time.Hour, false},
		{"no digits", "S", time.Hour, false},
		{"negative", "-1S", time.Hour, false},
		// A client's 99,999,999 hours overflowed the Duration into the past:
		// the call read as expired, the backend's failure not counted.
		{"past a Duration", "99999999H", time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := grpcExpired(c.v, start, start.Add(c.after)); got != c.want {
				t.Fatalf("grpcExpired(%q) after %v = %v; want %v", c.v, c.after, got, c.want)
			}
		})
	}
}
