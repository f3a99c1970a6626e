package harness

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// StartACLConsul starts a Consul server with ACLs on and default deny, set
// up as an operator does it: no token in its configuration, the ACL
// system bootstrapped through the API (PUT /v1/acl/bootstrap), the
// management token it returns kept in Token (the harness's own client
// sends it) and given to the agent as its agent token. Stopped when the
// test ends.
func StartACLConsul(t testing.TB) *Consul {
	t.Helper()
	c := newConsul(t, "latch-test", "-server", "-bootstrap-expect=1",
		"-hcl", `acl { enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}`)
	c.launch(t)
	client := c.Client(t)
	var token *api.ACLToken
	var err error
	// Bootstrapping answers an error until the servers have a leader and
	// the ACL system is up.
	WaitFor(t, 30*time.Second, "consul's ACL bootstrap", func() bool {
		select {
		case <-c.done:
			log := filepath.Join(c.dir, "consul.log")
			t.Fatalf("consul exited during start; the end of %s:\n%s", log, logTail(log, 40))
		default:
		}
		token, _, err = client.ACL().Bootstrap()
		return err == nil
	})
	c.Token = token.SecretID
	client = c.Client(t)
	if _, err := client.Agent().UpdateAgentACLToken(c.Token, nil); err != nil {
		t.Fatalf("setting the agent token: %v", err)
	}
	c.waitReady(t, 30*time.Second)
	return c
}
