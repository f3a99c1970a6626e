package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	dir    string
	serial int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "latch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, dir: t.TempDir(), serial: 1}
}

// issue returns a PEM certificate and key for names (DNS names or IPs),
// with a fresh serial number.
func (ca *testCA) issue(t testing.TB, names ...string) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Duration(ca.serial) * time.Hour).Truncate(time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), ca.serial
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
	writeFile(t, p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
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
