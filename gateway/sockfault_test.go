//go:build sockfault

package gateway

import "github.com/latchgw/latch/gateway/internal/sockio"

// faulty: this test binary injects faults under latch's sockets
// (gateway/internal/sockio, built with -tags sockfault).
const faulty = true

func seedFaults(seed uint64) { sockio.SeedFaults(seed) }

func faultsInjected() int64 {
	f := sockio.Faults()
	return f.ShortReads + f.ShortWrites + f.Again
}
