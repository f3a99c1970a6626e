package integration

import (
	"testing"

	"github.com/latchgw/latch/integration/harness"
)

// TestFaultSuiteClusters is the fault suite over replicated deployments of
// the engines latch stands on: Redis Sentinel, Redis Cluster and a
// three-server Consul cluster. It prints its own table
// (go test -v -run TestFaultSuiteClusters ./integration/).
func TestFaultSuiteClusters(t *testing.T) {
	t.Cleanup(func() { printFaultTable(t) })

	t.Run("consul 3 servers", consulCluster)

	t.Run("redis sentinel primary killed", func(t *testing.T) {
		s := harness.StartSentinel(t)
		old := s.Primary.Addr
		storeFailover(t, "redis sentinel: primary SIGKILL", s.URL, func() { s.Primary.Kill(t) },
			func() bool { p := s.PrimaryAddr(t); return p != "" && p != old && s.Replica.Role(t) == "master" })
	})

	t.Run("redis cluster primary killed", func(t *testing.T) {
		c := harness.StartCluster(t)
		victim := c.Primaries(t)[0]
		storeFailover(t, "redis cluster: a primary SIGKILL", c.URL, func() { victim.Kill(t) },
			func() bool { return len(c.Primaries(t)) == 3 && c.OK(t) })
	})
}
