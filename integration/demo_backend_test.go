package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/integration/harness"
)

// A demo backend registers itself again when its registration disappears
// (a Consul agent that lost its state), and not after it deregistered on
// SIGTERM.
func TestDemoBackendRegistersAgain(t *testing.T) {
	consul := harness.StartConsul(t)
	b := harness.StartBackend(t, consul, "web-1", "web", 200*time.Millisecond)
	registered := func() bool {
		services, err := consul.Client(t).Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		_, ok := services["web-1"]
		return ok
	}
	harness.WaitFor(t, 10*time.Second, "web-1 registered", registered)
	consul.Deregister(t, "web-1")
	harness.WaitFor(t, 10*time.Second, "web-1 registered again", registered)
	harness.WaitFor(t, 10*time.Second, "a log line about registering again", func() bool {
		log, _ := os.ReadFile(b.Log)
		return strings.Contains(string(log), "registered again")
	})
	b.Stop()
	if !b.Exited() || registered() {
		t.Fatalf("after SIGTERM: exited %v, registered %v; want gone from Consul", b.Exited(), registered())
	}
}

// demo-backend -help lists its flags on stdout; -version names its build.
func TestDemoBackendHelpAndVersion(t *testing.T) {
	bin := harness.Binaries(t) + "/demo-backend"
	out, err := exec.Command(bin, "-help").Output()
	if err != nil {
		t.Fatalf("-help: %v", err)
	}
	for _, want := range []string{"usage: demo-backend", "-addr", "-check-interval", "DEMO_ID", "-version"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-help lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "demo-backend ") || !strings.Contains(string(out), "go1.") {
		t.Errorf("-version: %q %v", out, err)
	}
}
