package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sentinel is a Redis primary, one replica and three sentinels watching
// them as "mymaster", from Debian's redis-server (redis-sentinel is the
// same binary with --sentinel). Failover is tuned to take seconds, not
// the default 30s+: down-after 1s.
type Sentinel struct {
	Primary, Replica *Redis
	Sentinels        []string // host:port
	// URL is the latch redis.url for this setup (ParseRedisURL's Sentinel form).
	URL string

	procs []*Process
}

// MasterName is the name the sentinels monitor.
const MasterName = "mymaster"

// StartSentinel starts the setup and waits until every sentinel knows the
// replica and the other sentinels. Everything stops when the test ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Primary: StartRedis(t)}
	s.Replica = StartRedisWith(t, "--replicaof", "127.0.0.1", port(s.Primary.Addr), "--repl-diskless-sync-delay", "0")
	s.Primary.Args = []string{"--repl-diskless-sync-delay", "0"} // on a restart
	dir := t.TempDir()
	for i := range 3 {
		p := FreePort(t)
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, p, dir, MasterName, port(s.Primary.Addr), MasterName, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		s.procs = append(s.procs, StartProcess(t, redisBinary(t), conf, "--sentinel"))
		s.Sentinels = append(s.Sentinels, "127.0.0.1:"+strconv.Itoa(p))
	}
	s.URL = "redis://" + strings.Join(s.Sentinels, ",") + "/0?master_name=" + MasterName
	WaitFor(t, 30*time.Second, "replica in sync, sentinels to know it and each other", func() bool {
		if !s.Replica.InSync(t) {
			return false
		}
		for _, a := range s.Sentinels {
			out := redisCLI(t, a, "SENTINEL", "MASTER", MasterName)
			if !strings.Contains(out, "num-slaves\n1\n") || !strings.Contains(out, "num-other-sentinels\n2\n") {
				return false
			}
		}
		return true
	})
	return s
}

// PrimaryAddr asks a sentinel which server is the primary now.
func (s *Sentinel) PrimaryAddr(t testing.TB) string {
	t.Helper()
	for _, a := range s.Sentinels {
		out := strings.Fields(redisCLI(t, a, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName))
		if len(out) == 2 {
			return out[0] + ":" + out[1]
		}
	}
	return ""
}

// Cluster is a Redis Cluster of three primaries with one replica each,
// made by redis-cli --cluster create, with a 1s node timeout so a killed
// primary's replica takes over within seconds.
type Cluster struct {
	Nodes []*Redis
	// URL is the latch redis.url (ParseRedisURL's Cluster form).
	URL string
}

// StartCluster starts the six nodes, creates the cluster and waits until
// every node says cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	var addrs []string
	for range 6 {
		n := StartRedisWith(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0")
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis://" + strings.Join(addrs[:3], ",")
	c.WaitOK(t, 30*time.Second)
	return c
}

// WaitOK waits until every running node reports cluster_state:ok and
// every running replica is in sync with its primary (a replica that never
// synced would not be promoted).
func (c *Cluster) WaitOK(t testing.TB, timeout time.Duration) {
	t.Helper()
	WaitFor(t, timeout, "cluster_state:ok on every node, replicas in sync", func() bool {
		for _, n := range c.Nodes {
			if n.cmd == nil {
				continue
			}
			if !strings.Contains(redisCLI(t, n.Addr, "CLUSTER", "INFO"), "cluster_state:ok") {
				return false
			}
			if n.Role(t) == "slave" && !n.InSync(t) {
				return false
			}
		}
		return true
	})
}

// InSync reports whether a replica's link to its primary is up.
func (r *Redis) InSync(t testing.TB) bool {
	t.Helper()
	return strings.Contains(redisCLI(t, r.Addr, "INFO", "replication"), "master_link_status:up")
}

// OK reports whether every running node says cluster_state:ok.
func (c *Cluster) OK(t testing.TB) bool {
	t.Helper()
	for _, n := range c.Nodes {
		if n.cmd != nil && !strings.Contains(redisCLI(t, n.Addr, "CLUSTER", "INFO"), "cluster_state:ok") {
			return false
		}
	}
	return true
}

// Primaries lists the nodes that are primaries now (by their own ROLE).
func (c *Cluster) Primaries(t testing.TB) []*Redis {
	t.Helper()
	var out []*Redis
	for _, n := range c.Nodes {
		if n.cmd != nil && strings.HasPrefix(redisCLI(t, n.Addr, "ROLE"), "master") {
			out = append(out, n)
		}
	}
	return out
}

// Role is the first word of ROLE ("master", "slave") or "" when down.
func (r *Redis) Role(t testing.TB) string {
	t.Helper()
	if r.cmd == nil {
		return ""
	}
	out, _, _ := strings.Cut(redisCLI(t, r.Addr, "ROLE"), "\n")
	return out
}

// redisCLI runs one command with redis-cli against addr and returns its
// raw output ("" on error: the node may be down).
func redisCLI(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, p, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", p, "--raw"}, args...)...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func port(addr string) string { _, p, _ := strings.Cut(addr, ":"); return p }
