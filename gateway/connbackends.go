package gateway

import (
	"context"
	"net"

	"github.com/latchgw/latch/gateway/forward"
)

// withBackendBudget returns a ConnContext hook that gives each client
// connection its budget of n backend connections
// (server.max_backend_connections_per_connection; forward.WithConnBudget),
// after next (the connection caps; nil: none). n ≤ 0: next as it is.
func withBackendBudget(next func(context.Context, net.Conn) context.Context, n int) func(context.Context, net.Conn) context.Context {
	if n <= 0 {
		return next
	}
	return func(ctx context.Context, c net.Conn) context.Context {
		if next != nil {
			ctx = next(ctx, c)
		}
		return forward.WithConnBudget(ctx, n)
	}
}
