package harness

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Backend is a demo-backend process registered in Consul with an HTTP
// check, as users run it.
type Backend struct {
	ID, Addr string
	*Process
}

// StartBackend runs cmd/demo-backend as id of service on a free port,
// registered in consul with an HTTP check every checkInterval, and waits
// until it answers.
func StartBackend(t testing.TB, c *Consul, id, service string, checkInterval time.Duration, extra ...string) *Backend {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	args := append([]string{"-addr", addr, "-id", id, "-service", service, "-consul", c.HTTPAddr,
		"-check-interval", checkInterval.String()}, extra...)
	p := StartProcess(t, Binaries(t)+"/demo-backend", args...)
	WaitFor(t, 10*time.Second, "backend "+id+" up", func() bool {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return &Backend{ID: id, Addr: addr, Process: p}
}
