package integration

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
	"os"
	"path/filepath"
	"testing"
	"time"
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	dir := b.TempDir()
	c := benchCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"),
		bundle: filepath.Join(dir, "bundle.pem")}
	for path, data := range map[string][]byte{c.certFile: certPEM, c.keyFile: keyPEM, c.bundle: append(certPEM, keyPEM...)} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	c.client = &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(1024)}
	return c
}

// yaml is latch's config for serving the certificate.
func (c benchCert) yaml() string {
	return "tls:\n  certificates:\n    - cert_file: " + c.certFile + "\n      key_file: " + c.keyFile + "\n"
}
