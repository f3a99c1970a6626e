package gateway

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/config"
)

// tls.acme plugs into the TLS listener of tls.certificates: the names it
// does not manage get the files' certificates, acme-tls/1 is offered beside
// h2, and with tls.acme alone (no certificate files) the listener still
// speaks TLS and refuses a name nobody has a certificate for, cleanly.
// Nothing reaches a CA: no domains are ordered at start, and the names
// asked for are not route hosts.
func TestTLSWithACME(t *testing.T) {
	ca := newTestCA(t)
	start := func(t *testing.T, certs []config.Certificate) (*Gateway, string) {
		cfg := config.Config{Consul: config.Consul{Disabled: true}, Cookie: config.Cookie{Secrets: config.List{testSecret}},
			Routes: []config.Route{{Service: "web", Host: "routed.test", Backends: config.List{newBackend(t, "a").addr()}}}}
		cfg.TLS = config.TLS{Certificates: certs, RedirectListen: "127.0.0.1:0", ACME: config.ACME{
			RouteHosts: true, CA: "https://127.0.0.1:1/dir", Storage: t.TempDir()}}
		cc, err := cfg.Compile()
		if err != nil {
			t.Fatal(err)
		}
		g, closeAll, err := Assemble(cc, slog.New(slog.DiscardHandler), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeAll)
		var ls Listeners
		for _, l := range []*net.Listener{&ls.Public, &ls.Redirect} {
			if *l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.RunOn(ctx, ls) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		waitUntil(t, "gateway ready", g.Ready)
		return g, ls.Public.Addr().String()
	}
	dial := func(addr, sni string, protos ...string) (*tls.ConnectionState, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: sni, RootCAs: ca.pool, NextProtos: protos})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st, nil
	}

	t.Run("beside tls.certificates", func(t *testing.T) {
		g, addr := start(t, []config.Certificate{ca.files(t, "files", "files.test")})
		st, err := dial(addr, "files.test", "h2", "http/1.1")
		if err != nil {
			t.Fatalf("handshake for a tls.certificates name with tls.acme on: %v", err)
		}
		if !slices.Contains(st.PeerCertificates[0].DNSNames, "files.test") || st.NegotiatedProtocol != "h2" {
			t.Fatalf("got %v over %q; want the files' certificate over h2", st.PeerCertificates[0].DNSNames, st.NegotiatedProtocol)
		}
		if protos := g.tlsConfig().NextProtos; !slices.Equal(protos, []string{"h2", "http/1.1", acme.NextProto}) {
			t.Errorf("ALPN %q; want h2, http/1.1, %s", protos, acme.NextProto)
		}
		if err := g.ReloadCertificates(); err != nil {
			t.Errorf("ReloadCertificates: %v", err)
		}
	})

	t.Run("alone", func(t *testing.T) {
		g, addr := start(t, nil)
		if g.certs != nil {
			t.Fatal("a certificate store without tls.certificates")
		}
		_, err := dial(addr, "unknown.test", "http/1.1")
		if err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("handshake for a name no route names: %v; want a TLS alert", err)
		}
		if err := g.ReloadCertificates(); err != nil {
			t.Errorf("ReloadCertificates without tls.certificates: %v", err)
		}
		// Still a TLS listener: plain HTTP for the route's host is refused.
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = "routed.test"
		if resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain HTTP on the public listener reached the backend; want TLS only")
			}
		}
	})
}
