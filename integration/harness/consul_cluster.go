package harness

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// ConsulCluster is three Consul servers and one client agent on loopback,
// each on its own ports, as users run Consul: services register with the
// client agent and latch reads from it.
type ConsulCluster struct {
	Servers []*Consul
	Agent   *Consul
}

// StartConsulCluster starts the servers and the client agent and waits
// until the agent knows a leader and is in the catalog.
func StartConsulCluster(t testing.TB) *ConsulCluster {
	t.Helper()
	cc := &ConsulCluster{}
	for i := range 3 {
		cc.Servers = append(cc.Servers, newConsul(t, fmt.Sprintf("server-%d", i+1), "-server", "-bootstrap-expect=3"))
	}
	var joins []string
	for _, s := range cc.Servers {
		joins = append(joins, "-retry-join=127.0.0.1:"+strconv.Itoa(s.ports[1]), "-retry-interval=1s")
	}
	for _, s := range cc.Servers {
		s.args = append(s.args, joins...)
		s.launch(t)
	}
	cc.Agent = newConsul(t, "client-1", joins...)
	cc.Agent.launch(t)
	cc.Agent.waitReady(t, 60*time.Second, cc.Servers...)
	return cc
}

// Leader is the server that leads now (nil when there is none or the agent
// cannot tell).
func (cc *ConsulCluster) Leader(t testing.TB) *Consul {
	t.Helper()
	addr, err := cc.Agent.Client(t).Status().Leader()
	if err != nil || addr == "" {
		return nil
	}
	for _, s := range cc.Servers {
		if addr == "127.0.0.1:"+strconv.Itoa(s.ports[3]) && s.cmd != nil {
			return s
		}
	}
	return nil
}

// Launch starts a stopped server again without waiting for it (a server
// alone cannot elect a leader).
func (cc *ConsulCluster) Launch(t testing.TB, s *Consul) {
	t.Helper()
	s.launch(t)
}
