package harness

import (
	"context"
	"testing"
)

func TestRedisRestartLosesKeys(t *testing.T) {
	r := StartRedis(t)
	c := r.Client(t)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if r.CommandCount(t)["set"] != 1 {
		t.Fatalf("commandstats: %v; want one set", r.CommandCount(t))
	}
	r.Stop(t)
	if c.Ping(ctx).Err() == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Start(t)
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatal("key survived a restart of a server without persistence")
	}
}
