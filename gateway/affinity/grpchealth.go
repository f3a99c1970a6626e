package affinity

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
)

// The gRPC health checking protocol (grpc.health.v1), the check kind
// gRPC services register in Consul (GRPC checks): a unary call of
// /grpc.health.v1.Health/Check, spoken over the route's HTTP/2 Transport
// with no gRPC library. Its two messages are one string and one enum, and
// their protobuf encoding is written and read here:
//
//	HealthCheckRequest  { string service = 1; }
//	HealthCheckResponse { ServingStatus status = 1; } // SERVING = 1

const grpcServing = 1

// grpcCheckRequest is the body of a Check call of service: a gRPC
// message (uncompressed flag, 4-byte length) holding HealthCheckRequest.
func grpcCheckRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 0x0a) // field 1, length-delimited
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// grpcServingStatus reads the status of a HealthCheckResponse message
// from a response body (0: none, or not one message).
func grpcServingStatus(body []byte) uint64 {
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		return 0
	}
	msg, status := body[5:], uint64(0)
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return 0
		}
		msg = msg[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return 0
			}
			msg = msg[n:]
			if key>>3 == 1 {
				status = v
			}
		case 2: // length-delimited: a field of a newer version, skipped
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return 0
			}
			msg = msg[n+int(l):]
		default:
			return 0
		}
	}
	return status
}

// probeGRPC asks the backend at addr whether a.cfg.grpcService is
// SERVING: a 200, grpc-status 0 and the status SERVING pass; anything
// else (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, an error) fails.
func (a *activeChecks) probeGRPC(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.scheme+"://"+addr+"/grpc.health.v1.Health/Check",
		bytes.NewReader(grpcCheckRequest(a.cfg.grpcService)))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", "latch-health-check")
	resp, err := a.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	// grpc-status comes in the trailers (read with the body's end), or in
	// the head of a trailers-only answer.
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status")
	}
	return st == "0" && grpcServingStatus(body) == grpcServing
}
