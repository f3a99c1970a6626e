package session

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cookie-secret")
	first, created, err := LoadOrCreateSecret(path)
	if err != nil || !created || len(first) != 64 {
		t.Fatalf("first start: %q created=%v err=%v; want 64 hex characters, created", first, created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode: %v %v; want 0600", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateSecret(path)
	if err != nil || created || string(again) != string(first) {
		t.Fatalf("second start: %q created=%v err=%v; want the same secret, read", again, created, err)
	}

	own := filepath.Join(t.TempDir(), "own")
	if err := os.WriteFile(own, []byte("  a secret the operator wrote\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, _, err := LoadOrCreateSecret(own); err != nil || string(s) != "a secret the operator wrote" {
		t.Fatalf("operator's secret: %q %v", s, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSecret(short); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
	if _, _, err := LoadOrCreateSecret(filepath.Join(t.TempDir(), "missing-dir", "s")); err == nil {
		t.Fatal("an uncreatable file gave no error")
	}
}

// Replicas starting at once on one volume end with one secret.
func TestLoadOrCreateSecretRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cookie-secret")
	var wg sync.WaitGroup
	secrets := make([]string, 8)
	creators := make([]bool, 8)
	for i := range secrets {
		wg.Go(func() {
			s, c, err := LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
			}
			secrets[i], creators[i] = string(s), c
		})
	}
	wg.Wait()
	n := 0
	for i, s := range secrets {
		if s != secrets[0] {
			t.Fatalf("replica %d read %q, replica 0 %q", i, s, secrets[0])
		}
		if creators[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas say they created the secret; want 1", n)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
