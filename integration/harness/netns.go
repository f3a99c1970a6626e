package harness

import (
	"testing"

	"github.com/latchgw/latch/integration/harness/netns"
)

// Hosts and Host are netns's test hosts, named here for the integration
// suite: network namespaces on a bridge (see package netns).
type (
	Hosts = netns.Hosts
	Host  = netns.Host
)

// NeedNetns skips a test that needs network namespaces where the test is
// not root (a failure with LATCH_REQUIRE_NETNS set, as in CI).
func NeedNetns(t testing.TB) { t.Helper(); netns.NeedNetns(t) }

// StartHosts makes n hosts on a new bridge (see netns.StartHosts).
func StartHosts(t testing.TB, n int) *Hosts { t.Helper(); return netns.StartHosts(t, n) }

// StartIn runs bin with args in host's namespace, as StartProcess does in
// the test's own.
func StartIn(t testing.TB, host *Host, bin string, args ...string) *Process {
	t.Helper()
	argv := host.Command(bin, args...)
	return StartProcess(t, argv[0], argv[1:]...)
}
