package session

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestHostList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://h:1/0", "redis://h:1/0"},
		{"redis://h1:1,h2:2,h3:3", "redis://h1:1?&addr=h2:2&addr=h3:3"},
		{"redis://a:b@s1:1,s2:2/3?master_name=m", "redis://a:b@s1:1/3?master_name=m&addr=s2:2"},
		{"redis://s1:1,redis://s2:2?password=x", "redis://s1:1?password=x&addr=s2:2"},
	}
	for _, tt := range tests {
		if got, _ := hostList(tt.in); got != tt.want {
			t.Errorf("hostList(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseSentinelURL(t *testing.T) {
	c, err := ParseRedisURL("redis://s1:26379,s2:26379,s3:26379/0?master_name=mymaster&password=p")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*redis.Client); !ok {
		t.Fatalf("sentinel URL made a %T; want go-redis's failover *redis.Client", c)
	}
	if _, err := ParseRedisURL("redis://u:hunter2@s1:26379,s2:x/0?master_name=m&bogus=1"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad sentinel URL error %v: want an error that does not show the password", err)
	}
}
