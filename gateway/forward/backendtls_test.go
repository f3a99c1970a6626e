package forward

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness/testcert"
)

// Issue 22: a reload compiles new *tls.Configs; pools keyed by them piled
// up, one per reload. Pools follow the settings: a config compiled again
// with the same backend_tls shares its pool, a changed one gets its own,
// and RetireTLSPools forgets those no route in use has.
func TestBackendTLSPoolKeys(t *testing.T) {
	dir := t.TempDir()
	pem := func(name string, cas ...*testcert.CA) string {
		var b []byte
		for _, ca := range cas {
			b = append(b, ca.PEM()...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile, copied, both := pem("ca.pem", ca), pem("copy.pem", ca), pem("both.pem", ca, other)
	compile := func(t *testing.T, bt config.BackendTLS) *config.Compiled {
		t.Helper()
		bt.Enabled = config.Set(true)
		cfg := config.Config{Routes: []config.Route{{Service: "web", Backends: config.List{"127.0.0.1:1"}}}}
		cfg.Defaults.BackendTLS = bt
		cc, err := cfg.Compile()
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	base := config.BackendTLS{CAFile: config.Set(caFile)}

	for _, c := range []struct {
		name string
		next config.BackendTLS
		same bool // the next config's requests use the first's pool
	}{
		{"unchanged", base, true},
		{"the same CA under another file name", config.BackendTLS{CAFile: config.Set(copied)}, true},
		{"server_name set", config.BackendTLS{CAFile: config.Set(caFile), ServerName: config.Set("backend.test")}, false},
		{"another CA file content", config.BackendTLS{CAFile: config.Set(both)}, false},
		{"the system's roots", config.BackendTLS{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := compile(t, base)
			f := New(cc.Config().Transport, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nopObserver{})
			t.Cleanup(f.CloseIdleConnections)
			first, next := cc.Routes()[0], compile(t, c.next).Routes()[0]
			if first.BackendTLS() == next.BackendTLS() {
				t.Fatal("both compiles share a *tls.Config: the test proves nothing")
			}
			p1, p2 := f.poolFor(first), f.poolFor(next)
			if (p1 == p2) != c.same {
				t.Fatalf("same pool: %v; want %v", p1 == p2, c.same)
			}
			want := 2
			if c.same {
				want = 1
			}
			if n := countPools(f); n != want {
				t.Fatalf("%d TLS pools; want %d", n, want)
			}
			// The reload is done: only next's routes are in use.
			f.RetireTLSPools([]*config.Spec{next})
			if n := countPools(f); n != 1 {
				t.Fatalf("%d TLS pools after retiring; want 1", n)
			}
			if f.poolFor(next) != p2 {
				t.Fatal("the pool in use was retired")
			}
			f.RetireTLSPools(nil)
			if n := countPools(f); n != 0 {
				t.Fatalf("%d TLS pools with no route in use; want 0", n)
			}
		})
	}
}

func countPools(f *Forwarder) int {
	n := 0
	f.tlsPools.Range(func(any, any) bool { n++; return true })
	return n
}
