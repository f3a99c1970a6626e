// Package netns makes test hosts: network namespaces joined by veth on a
// bridge, as docker compose joins containers, and the knobs that make their
// network push back (small socket buffers, a rate-limited link, peers that
// read and write slowly). It imports nothing of latch, so the tests of
// gateway/forward and gateway/h1 can use it as well as the integration
// suite (through integration/harness, which re-exports it).
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// Hosts are network namespaces on one bridge: each Host is a machine of
// its own, with its own address and its own firewall, so a test can cut
// one link (this host to that address) and leave every other one up. The
// root namespace is on the bridge too, with the Gateway address and any
// added with AddAddr: servers the test runs itself (Consul, Redis,
// backends) listen there.
//
// Every namespace, link and bridge is named lt-<pid>-<n>…, and removed when
// the test ends, failed or not; StartHosts also removes what a test
// process that died left behind (its pid gone).
type Hosts struct {
	Gateway string // the root namespace's address on the bridge
	Hosts   []*Host

	prefix string
	subnet string // "10.a.b."
	next   int    // last octet of the next root-side address
}

var hostsMade atomic.Int64

// Host is one namespace of Hosts.
type Host struct {
	Name string // the namespace
	IP   string

	link string // the root namespace's end of the host's veth pair (on the bridge)
}

// NeedNetns skips a test that needs network namespaces where the test is
// not root, with the reason; with LATCH_REQUIRE_NETNS set (CI) it fails
// instead.
func NeedNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "SKIPPED: network namespaces (ip netns, nft) need root; run the suite as root (CI does)"
	if os.Getenv("LATCH_REQUIRE_NETNS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// StartHosts makes n hosts on a new bridge, each reachable from the root
// namespace and able to reach it, each with an empty nftables table of its
// own for Cut.
func StartHosts(t testing.TB, n int) *Hosts {
	t.Helper()
	NeedNetns(t)
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make tools` (Debian packages iproute2, nftables)", tool)
		}
	}
	removeLeftovers(t)
	pid := os.Getpid()
	// seq tells apart the Hosts of one test process: the kernel removes a
	// deleted namespace, and the veth ends in it, some time after `ip
	// netns del` returns, so the next test's links could not take the
	// same names (RTNETLINK answers: File exists). One character, base 36:
	// a link name has at most 15 (lt-4194304-nv1).
	seq := strconv.FormatInt(hostsMade.Add(1)%36, 36)
	h := &Hosts{prefix: fmt.Sprintf("lt-%d-%s", pid, seq), next: 100}
	h.subnet = freeSubnet(t, pid)
	h.Gateway = h.subnet + "1"
	br := h.prefix + "br"
	t.Cleanup(h.remove)
	run(t, "ip", "link", "add", br, "type", "bridge")
	run(t, "ip", "addr", "add", h.Gateway+"/24", "dev", br)
	run(t, "ip", "link", "set", br, "up")
	for i := 1; i <= n; i++ {
		veth, peer := fmt.Sprintf("%sv%d", h.prefix, i), fmt.Sprintf("%sp%d", h.prefix, i)
		host := &Host{Name: fmt.Sprintf("%sh%d", h.prefix, i), IP: h.subnet + strconv.Itoa(10+i), link: veth}
		run(t, "ip", "netns", "add", host.Name)
		h.Hosts = append(h.Hosts, host)
		run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", veth, "master", br)
		run(t, "ip", "link", "set", veth, "up")
		run(t, "ip", "link", "set", peer, "netns", host.Name)
		host.run(t, "ip", "link", "set", "lo", "up")
		host.run(t, "ip", "link", "set", peer, "name", "eth0")
		host.run(t, "ip", "addr", "add", host.IP+"/24", "dev", "eth0")
		host.run(t, "ip", "link", "set", "eth0", "up")
		host.run(t, "nft", "add table inet latch; "+
			"add chain inet latch outbound { type filter hook output priority 0; }; "+
			"add chain inet latch inbound { type filter hook input priority 0; }")
	}
	return h
}

// AddAddr adds another address of the root namespace on the bridge (a
// server of its own, e.g. a backend one host may be cut from).
func (h *Hosts) AddAddr(t testing.TB) string {
	t.Helper()
	ip := h.subnet + strconv.Itoa(h.next)
	h.next++
	run(t, "ip", "addr", "add", ip+"/32", "dev", h.prefix+"br")
	return ip
}

// remove deletes the namespaces (their veth ends go with them) and the
// bridge. The processes started in them must have ended first (t.Cleanup
// runs later registrations first).
func (h *Hosts) remove() {
	for _, host := range h.Hosts {
		_ = exec.Command("ip", "netns", "del", host.Name).Run()
	}
	_ = exec.Command("ip", "link", "del", h.prefix+"br").Run()
}

// Command is the argv that runs bin with args in the host's namespace (ip
// netns execs it: the process is bin's own).
func (host *Host) Command(bin string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", host.Name, bin}, args...)
}

// Cut drops every packet between the host and addr ("ip" or "ip:port"),
// both ways, as a partition does: nothing is refused, connections hang.
func (host *Host) Cut(t testing.TB, addr string) {
	t.Helper()
	ip, port, hasPort := strings.Cut(addr, ":")
	out, in := "ip daddr "+ip, "ip saddr "+ip
	if hasPort {
		out += " tcp dport " + port
		in += " tcp sport " + port
	}
	host.run(t, "nft", "add rule inet latch outbound "+out+" drop; add rule inet latch inbound "+in+" drop")
}

// Heal removes every cut of the host.
func (host *Host) Heal(t testing.TB) {
	t.Helper()
	host.run(t, "nft", "flush chain inet latch outbound; flush chain inet latch inbound")
}

func (host *Host) run(t testing.TB, args ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", host.Name}, args...)...)
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// freeSubnet picks a 10.x.y.0/24 from pid that no route of the root
// namespace covers yet.
func freeSubnet(t testing.TB, pid int) string {
	t.Helper()
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for i := range 256 {
		n := (pid + i*97) % (250 * 256)
		subnet := fmt.Sprintf("10.%d.%d.", 1+n/256, n%256)
		if !strings.Contains(string(routes), subnet) {
			return subnet
		}
	}
	t.Fatal("no free 10.x.y.0/24 for the test hosts")
	return ""
}

// removeLeftovers deletes the namespaces and bridges of lt-<pid>- whose
// test process is gone (killed before its cleanup ran).
func removeLeftovers(t testing.TB) {
	t.Helper()
	dead := func(name string) bool {
		rest, ok := strings.CutPrefix(name, "lt-")
		if !ok {
			return false
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil {
			return false
		}
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if name, _, _ := strings.Cut(line, " "); dead(name) {
				_ = exec.Command("ip", "netns", "del", name).Run()
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 1 {
				if name := strings.TrimSuffix(fields[1], ":"); dead(name) {
					_ = exec.Command("ip", "link", "del", name).Run()
				}
			}
		}
	}
}
