package integration

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchgw/latch/integration/harness/testcert"
)

// benchCert is the certificate both TLS rows of `make bench` serve: latch
// from its files, HAProxy from the bundle of the same two. client trusts
// it and keeps TLS sessions, so reconnects resume.
type benchCert struct {
	certFile, keyFile, bundle string
	client                    *tls.Config
}

func newBenchCert(b *testing.B) benchCert {
	b.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, _, err := ca.Issue("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	c := benchCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"),
		bundle: filepath.Join(dir, "bundle.pem")}
	for path, data := range map[string][]byte{c.certFile: certPEM, c.keyFile: keyPEM, c.bundle: append(certPEM, keyPEM...)} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	c.client = &tls.Config{RootCAs: ca.Pool, ClientSessionCache: tls.NewLRUClientSessionCache(1024)}
	return c
}

// yaml is latch's config for serving the certificate.
func (c benchCert) yaml() string {
	return "tls:\n  certificates:\n    - cert_file: " + c.certFile + "\n      key_file: " + c.keyFile + "\n"
}
