package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SecureConsul is a Consul server with ACLs on (default deny) and an HTTPS
// listener that verifies client certificates, with the files a client
// needs, made by `consul tls ca create` and `consul tls cert create`.
type SecureConsul struct {
	*Consul
	HTTPSAddr                 string // 127.0.0.1:port
	CAFile, CertFile, KeyFile string // the CA and a client certificate
	Token                     string // a management token
}

// StartSecureConsul starts it and waits until it is ready.
func StartSecureConsul(t testing.TB) *SecureConsul {
	t.Helper()
	dir := t.TempDir()
	bin := ConsulBinary(t)
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server", "-dc", "dc1"},
		{"tls", "cert", "create", "-client", "-dc", "dc1"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("consul %v: %v\n%s", args, err, out)
		}
	}
	https := FreePort(t)
	s := &SecureConsul{HTTPSAddr: "127.0.0.1:" + strconv.Itoa(https), Token: "latch-test-management-token",
		CAFile: filepath.Join(dir, "consul-agent-ca.pem"), CertFile: filepath.Join(dir, "dc1-client-consul-0.pem"),
		KeyFile: filepath.Join(dir, "dc1-client-consul-0-key.pem")}
	tls := fmt.Sprintf(`tls {
  defaults {
    ca_file = %q
    cert_file = %q
    key_file = %q
  }
  https { verify_incoming = true }
}
ports { https = %d }`, s.CAFile, filepath.Join(dir, "dc1-server-consul-0.pem"), filepath.Join(dir, "dc1-server-consul-0-key.pem"), https)
	acl := fmt.Sprintf(`acl {
  enabled = true
  default_policy = "deny"
  tokens {
    initial_management = %q
    agent = %q
  }
}`, s.Token, s.Token)
	s.Consul = newConsul(t, "latch-test", "-server", "-bootstrap-expect=1", "-hcl", tls, "-hcl", acl)
	s.Consul.Token = s.Token
	s.Consul.launch(t)
	s.Consul.waitReady(t, 30*time.Second)
	return s
}
