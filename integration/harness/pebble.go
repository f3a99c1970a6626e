package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's ACME test server with its DNS companion
// (pebble-challtestsrv), both on free loopback ports. Every name resolves
// to 127.0.0.1 through the companion, and pebble's validation authority
// connects to the ports the test names for HTTP-01 and TLS-ALPN-01:
// latch's listeners.
type Pebble struct {
	// Directory is the ACME directory URL (https://127.0.0.1:port/dir).
	Directory string
	// CAFile verifies pebble's own HTTPS certificate (tls.acme.ca_root).
	CAFile string

	mgmt   string // management listener, host:port
	client *http.Client
}

// StartPebble starts pebble-challtestsrv and pebble, whose validation
// authority checks HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of
// 127.0.0.1, and waits until the directory answers. Both stop when the test
// ends. It fails the test, never skips it, when the binaries are missing.
func StartPebble(t testing.TB, httpPort, tlsPort int) *Pebble {
	t.Helper()
	dir := t.TempDir()
	dns := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	StartProcess(t, ToolBinary(t, "pebble-challtestsrv"),
		"-dnsserver", dns, "-management", "127.0.0.1:"+strconv.Itoa(FreePort(t)),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	p := &Pebble{CAFile: filepath.Join(dir, "ca.pem"), mgmt: "127.0.0.1:" + strconv.Itoa(FreePort(t))}
	pool := writePebbleCerts(t, dir)
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	listen := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	p.Directory = "https://" + listen + "/dir"
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": p.mgmt,
		"certificate": filepath.Join(dir, "cert.pem"), "privateKey": filepath.Join(dir, "key.pem"),
		"httpPort": httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter": map[string]int{"authz": 1, "order": 1},
	}}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Validate at once (no random sleep before each validation), for real
	// (no blanket "valid"), and accept every nonce (by default pebble
	// rejects 5% of them to exercise clients' retries).
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0"}
	proc := StartProcessEnv(t, env, ToolBinary(t, "pebble"), "-config", confFile, "-dnsserver", dns)
	WaitFor(t, 15*time.Second, "pebble's ACME directory", func() bool {
		if proc.Exited() {
			log, _ := os.ReadFile(proc.Log)
			t.Fatalf("pebble exited:\n%s", log)
		}
		resp, err := p.client.Get(p.Directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// Roots are the roots pebble signs certificates with, from its
// management endpoint (they are made anew each time pebble starts).
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble roots: %v %s", err, resp.Status)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble roots: no PEM certificate in %q", body)
	}
	return pool
}

// writePebbleCerts writes a CA (ca.pem) and, signed by it, pebble's HTTPS
// certificate for 127.0.0.1 and localhost (cert.pem, key.pem) into dir,
// and returns a pool holding the CA.
func writePebbleCerts(t testing.TB, dir string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "latch test pebble CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}
