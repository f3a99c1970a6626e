package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness/testcert"
)

// The binary serves HTTPS (HTTP/2 by ALPN) with tls.certificates, opens
// tls.redirect_listen, and refuses to start on a pair that does not load,
// naming it.
func TestTLSListeners(t *testing.T) {
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()

	listen, admin, redirect := freeAddr(t), freeAddr(t), freeAddr(t)
	conf := filepath.Join(dir, "latch.yaml")
	writeConf := func(keyFile string) {
		os.WriteFile(conf, []byte("tls:\n  certificates:\n    - cert_file: "+certFile+"\n      key_file: "+keyFile+
			"\n  redirect_listen: "+redirect+"\n"), 0o600)
	}
	writeConf(keyFile)
	p := startLatch(t, "-config", conf, "-listen", listen, "-admin-listen", admin, "-service", "web",
		"-backends", strings.TrimPrefix(backend.URL, "http://"))
	p.waitReady(t, admin)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + listen + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || resp.ProtoMajor != 2 {
		t.Fatalf("GET https://%s/x: %d %q %s; want 200 \"ok\" over HTTP/2", listen, resp.StatusCode, body, resp.Proto)
	}
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get("http://" + redirect + "/a?b=c")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := strings.Cut(listen, ":")
	if want := "https://127.0.0.1:" + port + "/a?b=c"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Fatalf("redirect listener: %d %q; want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	writeConf(certFile) // a "key" that is a certificate
	out, err := exec.Command(built(t), "-config", conf, "-listen", freeAddr(t), "-admin-listen", "off", "-service", "web",
		"-backends", "127.0.0.1:1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "tls.certificates[0]") {
		t.Fatalf("a bad key file: %v\n%s\nwant exit status 2 naming tls.certificates[0]", err, out)
	}
}
