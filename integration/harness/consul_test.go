package harness

import (
	"testing"
	"time"
)

func TestConsulSmoke(t *testing.T) {
	start := time.Now()
	c := StartConsul(t)
	t.Logf("consul up in %v", time.Since(start))
	c.Register(t, "a-1", "a", "127.0.0.1:1234")
	c.Stop(t)
	start = time.Now()
	c.Start(t)
	t.Logf("consul restarted in %v", time.Since(start))
	svcs, err := c.Client(t).Agent().Services()
	if err != nil || svcs["a-1"] == nil {
		t.Fatalf("registration lost across restart: %v %v", svcs, err)
	}
}
