package affinity

import (
	"bytes"
	"encoding/binary"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// The hand-written messages of grpchealth.go are protobuf's own encoding.
func TestGRPCHealthMessages(t *testing.T) {
	for _, service := range []string{"", "shop.Cart", string(make([]byte, 300))} {
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		if got := grpcCheckRequest(service); !bytes.Equal(got[5:], want) || binary.BigEndian.Uint32(got[1:5]) != uint32(len(want)) || got[0] != 0 {
			t.Fatalf("request for %q: % x; want the message % x", service, got, want)
		}
	}
	frame := func(msg []byte) []byte {
		out := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		return append(out, msg...)
	}
	for _, c := range []struct {
		name string
		body []byte
		want uint64
	}{
		{"serving", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})), 1},
		{"not serving", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})), 2},
		{"service unknown", frame(mustMarshal(t, &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVICE_UNKNOWN})), 3},
		{"unknown (the zero value: an empty message)", frame(nil), 0},
		{"a newer field skipped", frame(append(mustMarshal(t, &healthpb.HealthCheckResponse{Status: 1}), 0x12, 2, 'h', 'i')), 1},
		{"compressed flag", append([]byte{1}, frame([]byte{8, 1})[1:]...), 0},
		{"length past the body", []byte{0, 0, 0, 0, 9, 8, 1}, 0},
		{"truncated varint", frame([]byte{8}), 0},
		{"short", []byte{0, 0}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := grpcServingStatus(c.body); got != c.want {
				t.Fatalf("status %d; want %d", got, c.want)
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
