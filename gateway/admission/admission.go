// Package admission owns what latch admits before routing: the public
// listener's connection caps (server.max_connections and
// max_connections_per_ip, Caps), each client connection's budget of
// backend connections (WithBackendBudget), and the screen, the requests
// latch never forwards (Screen). It counts what it refuses through
// Observer (gateway/metrics' Series) and knows nothing of routes,
// backends or sessions; gateway wires it into the servers and chi.
package admission

import (
	"context"
	"net"
	"strings"

	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/gateway/h1"
)

// Observer counts what admission admits and refuses. Its methods are
// called concurrently, from the servers' connection hooks and handlers,
// and must not block.
type Observer interface {
	// ConnOpened counts a connection a cap admitted; ConnClosed counts
	// it out.
	ConnOpened()
	ConnClosed()
	// ConnRefused counts a connection a cap refused: limit is "total" or
	// "per_ip".
	ConnRefused(limit string)
	// Refused counts a request refused before routing, by reason.
	Refused(reason string)
}

// WithBackendBudget returns a ConnContext hook that gives each client
// connection its budget of n backend connections
// (server.max_backend_connections_per_connection; forward.WithConnBudget),
// after next (the connection caps; nil: none). n ≤ 0: next as it is.
func WithBackendBudget(next func(context.Context, net.Conn) context.Context, n int) func(context.Context, net.Conn) context.Context {
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

// HeadRejected returns gateway/h1's Rejected hook: it counts a request h1
// refused before the handler, by its kind in snake case (head_too_large,
// too_many_fields, head_memory, …), as obs.Refused.
func HeadRejected(obs Observer) func(h1.Kind) {
	snake := strings.NewReplacer(" ", "_", "-", "_")
	return func(k h1.Kind) { obs.Refused(snake.Replace(k.String())) }
}
