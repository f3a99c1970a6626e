package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// bar is a proxy latch is measured against, running in this process
// session like latch (harness.StartProcess: its own process group, no
// setsid, so the kernel's autogroup scheduling gives it the same CPU share).
type bar struct {
	name    string
	url     string
	cookies []string // sticky clients: each names (or hashes to) one backend
	proc    *harness.Process
}

// startHAProxy runs Debian's haproxy, when installed, at its packaged
// defaults (no nbthread: one thread per core; Debian's timeouts; HTTP
// keep-alive to the backends, its default mode; no logging — Debian's
// config logs to /dev/log, which no one reads here) with the usual sticky
// recipe: round robin, and a cookie naming the backend inserted on the
// first response ("cookie SRV insert indirect nocache").
func startHAProxy(b *testing.B, backends []string) (bar, bool) {
	return startHAProxyOn(b, backends, "")
}

// startHAProxyOn is startHAProxy terminating TLS with the PEM bundle
// (certificate and key) when one is given.
func startHAProxyOn(b *testing.B, backends []string, bundle string) (bar, bool) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return bar{}, false
	}
	br := bar{name: "haproxy", url: fmt.Sprintf("http://127.0.0.1:%d/", harness.FreePort(b))}
	bind := ""
	if bundle != "" {
		br.name, br.url = "haproxy tls", "https"+strings.TrimPrefix(br.url, "http")
		bind = " ssl crt " + bundle
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `defaults
    mode http
    timeout connect 5s
    timeout client 50s
    timeout server 50s
frontend fe
    bind %s%s
    default_backend web
backend web
    balance roundrobin
    cookie SRV insert indirect nocache
`, hostPort(br.url), bind)
	for i, be := range backends {
		fmt.Fprintf(&cfg, "    server web-%d %s cookie w%d\n", i+1, hostPort(be), i+1)
		br.cookies = append(br.cookies, fmt.Sprintf("SRV=w%d", i+1))
	}
	path := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	br.proc = harness.StartProcess(b, bin, "-db", "-f", path)
	if bundle == "" {
		waitOK(b, br)
	}
	return br, true
}

// startNginx runs Debian's nginx, when installed, as the second bar: its
// open-source build has no "sticky", so the usual recipe stands in — a map
// that issues a random cookie to a client without one, and "hash $cookie
// consistent" over the backends, with keep-alive to them. Debian's
// defaults otherwise (worker_processes auto, access log to a file), except
// worker_connections: Debian's 768 per worker is below the 5,000 idle
// connections of the memory scenario.
func startNginx(b *testing.B, backends []string) (bar, bool) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return bar{}, false
	}
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the workers run as nobody
		b.Fatal(err)
	}
	br := bar{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/", harness.FreePort(b))}
	var servers strings.Builder
	for _, be := range backends {
		fmt.Fprintf(&servers, "        server %s;\n", hostPort(be))
	}
	cfg := fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 8192; }
http {
    sendfile on;
    tcp_nopush on;
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    map $cookie_SRV $sticky_key { "" $request_id; default $cookie_SRV; }
    map $cookie_SRV $sticky_set { "" "SRV=$request_id; Path=/"; default ""; }
    upstream web {
        hash $sticky_key consistent;
%[2]s        keepalive 32;
    }
    server {
        listen %[3]s;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header Set-Cookie $sticky_set;
        }
    }
}
`, dir, servers.String(), hostPort(br.url))
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range 10_000 { // random-looking keys spread over the backends by the hash
		br.cookies = append(br.cookies, fmt.Sprintf("SRV=%08x%08x", i*2654435761, i))
	}
	br.proc = harness.StartProcess(b, bin, "-e", "stderr", "-p", dir, "-c", path)
	waitOK(b, br)
	return br, true
}

func waitOK(b *testing.B, br bar) {
	harness.WaitFor(b, 10*time.Second, br.name+" to answer", func() bool {
		resp, err := http.Get(br.url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// hostPort turns http://host:port/ into host:port.
func hostPort(url string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"), "/")
}
