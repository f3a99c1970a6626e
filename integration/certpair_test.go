package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness/testcert"
)

// certPair makes a test CA and a certificate for 127.0.0.1 (and names) it
// signed, written to files for latch's tls.certificates; clients trust
// ca.Pool.
func certPair(t *testing.T, names ...string) (*testcert.CA, config.Certificate) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := ca.Issue(append([]string{"127.0.0.1"}, names...)...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pair := config.Certificate{CertFile: filepath.Join(dir, "latch.crt"), KeyFile: filepath.Join(dir, "latch.key")}
	for f, b := range map[string][]byte{pair.CertFile: certPEM, pair.KeyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, pair
}
