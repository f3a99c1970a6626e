package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness/testcert"
)

// testCA issues certificates for the TLS tests into a folder of the test's.
type testCA struct {
	*testcert.CA
	pool *x509.CertPool
	dir  string
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, pool: ca.Pool, dir: t.TempDir()}
}

// issue is testcert's Issue, failing the test on an error.
func (ca *testCA) issue(t testing.TB, names ...string) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	certPEM, keyPEM, serial, err := ca.Issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, serial
}

// files issues a certificate for names into files named after file and
// returns them as a config pair.
func (ca *testCA) files(t testing.TB, file string, names ...string) config.Certificate {
	t.Helper()
	c, k, _ := ca.issue(t, names...)
	pair := config.Certificate{CertFile: filepath.Join(ca.dir, file+".crt"), KeyFile: filepath.Join(ca.dir, file+".key")}
	writeFile(t, pair.CertFile, c)
	writeFile(t, pair.KeyFile, k)
	return pair
}

// writeFile replaces path's content atomically (a rename), as certificate
// managers do.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// caFile writes the CA's certificate to a PEM file.
func (ca *testCA) caFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(ca.dir, "ca.pem")
	writeFile(t, p, ca.PEM())
	return p
}

// client is an HTTP client trusting the CA, over HTTP/2 or HTTP/1.1.
func (ca *testCA) client(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// startTLSGateway is startGateway serving TLS with pairs (the first the
// default), on implementation impl ("" : the suite's), its client speaking
// HTTP/2 or HTTP/1.1.
func startTLSGateway(t *testing.T, ca *testCA, impl string, h2 bool, mutate func(*config.Config), backends ...*testBackend) *testGateway {
	t.Helper()
	tg := startGateway(t, func(c *config.Config) {
		if impl != "" {
			c.Server.Implementation = impl
		}
		if len(c.TLS.Certificates) == 0 {
			c.TLS.Certificates = []config.Certificate{ca.files(t, "default", "127.0.0.1")}
		}
		if mutate != nil {
			mutate(c)
		}
	}, backends...)
	tg.client = ca.client(h2)
	return tg
}

// leafOf handshakes with the gateway naming sni and returns the
// certificate it got (unverified: the test compares what it was given).
func leafOf(t testing.TB, tg *testGateway, sni string) *x509.Certificate {
	t.Helper()
	addr := tg.url[len("https://"):]
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake (SNI %q): %v", sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}
