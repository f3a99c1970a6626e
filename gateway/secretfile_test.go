package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// LATCH_COOKIE_SECRET_FILE: the first start creates the secret and says so,
// the next reads it; a secret given directly wins over the file.
func TestCookieSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cookie-secret")
	start := func(e map[string]string) string {
		t.Helper()
		inv, err := config.Load([]string{"-service", "web", "-backends", "127.0.0.1:1"}, func(k string) string { return e[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		_, closeAll, err := Assemble(inv.Config, slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
		closeAll()
		if err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	if logs := start(map[string]string{config.EnvCookieSecretFile: path}); !strings.Contains(logs, "generated a cookie secret") {
		t.Errorf("first start did not say it generated the secret:\n%s", logs)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if logs := start(map[string]string{config.EnvCookieSecretFile: path}); strings.Contains(logs, "generated") || strings.Contains(logs, "random") {
		t.Errorf("second start did not just read the secret:\n%s", logs)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Error("the secret file changed on the second start")
	}
	other := filepath.Join(t.TempDir(), "unused")
	start(map[string]string{config.EnvCookieSecretFile: other, config.EnvCookieSecret: "0123456789abcdef0123"})
	if _, err := os.Stat(other); err == nil {
		t.Error("a secret file was created although a secret was given")
	}
}
