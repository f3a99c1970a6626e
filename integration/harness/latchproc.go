package harness

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/latchgw/latch/gateway/config"
)

// LatchProcess is cmd/latch run as users run it, from a config file: on a
// host of its own, or in the test's namespace. Built without the race
// detector, it moves bytes at the speed users see.
type LatchProcess struct {
	Admin string // http://admin-address
	*Process
}

// StartLatchProcess writes cfg (its Listen and Admin.Listen set by the
// caller) to a file and runs latch on it, in host (nil: the test's own
// namespace), and waits until it is ready.
func StartLatchProcess(t testing.TB, host *Host, cfg config.Config) *LatchProcess {
	t.Helper()
	if _, err := cfg.Compile(); err != nil {
		t.Fatalf("latch config: %v", err)
	}
	text, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "latch.yaml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := Binaries(t) + "/latch"
	l := &LatchProcess{Admin: "http://" + cfg.Admin.Listen}
	if host == nil {
		l.Process = StartProcess(t, bin, "-config", path)
	} else {
		l.Process = StartIn(t, host, bin, "-config", path)
	}
	WaitFor(t, 30*time.Second, "latch ready at "+l.Admin, func() bool {
		resp, err := http.Get(l.Admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return l
}
