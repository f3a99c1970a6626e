package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/latchgw/latch/integration/harness"
)

// consulACLPolicy is the policy the README gives consul.token (README,
// "Consul ACLs"), for a latch routing the service web: read web's
// instances, and the nodes they run on (a health answer names each
// instance's node; without node:read Consul leaves the instance out).
const consulACLPolicy = `service "web" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}`

// TestConsulACLPolicy runs latch as users do (CONSUL_HTTP_TOKEN in its
// environment) against a Consul agent with ACLs on and default deny,
// bootstrapped as an operator does it. With a token holding the README's
// policy, latch discovers web and forwards to it. Each rule of the policy
// is needed: a token missing either, or with no policy, gets nothing, and
// latch says in its log which permission is missing; a token Consul does
// not know is refused, and latch says so (not "unreachable").
func TestConsulACLPolicy(t *testing.T) {
	c := harness.StartACLConsul(t)
	client := c.Client(t)
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("web-%d", i)
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Backend-Id", id)
			io.WriteString(w, id)
		}))
		t.Cleanup(b.Close)
		c.Register(t, id, "web", strings.TrimPrefix(b.URL, "http://"))
	}
	policies := 0
	token := func(rules string) string {
		t.Helper()
		tok := &api.ACLToken{Description: "latch test"}
		if rules != "" {
			policies++
			p, _, err := client.ACL().PolicyCreate(&api.ACLPolicy{Name: "latch-" + strconv.Itoa(policies), Rules: rules}, nil)
			if err != nil {
				t.Fatalf("creating the policy:\n%s\n%v", rules, err)
			}
			tok.Policies = []*api.ACLTokenPolicyLink{{ID: p.ID}}
		}
		tok, _, err := client.ACL().TokenCreate(tok, nil)
		if err != nil {
			t.Fatalf("creating a token: %v", err)
		}
		return tok.SecretID
	}
	serviceOnly, nodeOnly, _ := strings.Cut(consulACLPolicy, "\n}\n")
	serviceOnly += "\n}"

	t.Run("the README's policy", func(t *testing.T) {
		l := startLatchWithToken(t, c, token(consulACLPolicy))
		harness.WaitFor(t, 15*time.Second, "latch ready", func() bool { return status(l.admin+"/readyz") == http.StatusOK })
		seenAll(t, l.url, 15*time.Second, "web-1", "web-2")
		// The catalog (routes from tags) lists only web to this token:
		// news, at INFO; nothing above that about ACLs.
		for _, line := range strings.Split(l.log(), "\n") {
			if strings.Contains(line, "ACL") && !strings.Contains(line, "level=INFO") {
				t.Errorf("latch complained about ACLs with the README's policy:\n%s", line)
			}
		}
	})
	for _, tt := range []struct{ name, token, want string }{
		{"no node:read", token(serviceOnly), `consul left instances out of its answer for lack of ACL permission`},
		{"no service:read", token(nodeOnly), `consul left instances out of its answer for lack of ACL permission`},
		{"a token without a policy", token(""), `consul left instances out of its answer for lack of ACL permission`},
		{"a token consul does not know", "00000000-0000-4000-8000-000000000000", `consul refused latch's ACL token`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := startLatchWithToken(t, c, tt.token)
			line := ""
			harness.WaitFor(t, 15*time.Second, "latch to log, for service web: "+tt.want, func() bool {
				for _, s := range strings.Split(l.log(), "\n") {
					if strings.Contains(s, tt.want) && strings.Contains(s, `watch="service web"`) {
						line = s
					}
				}
				return line != ""
			})
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, `node_prefix \"\" { policy = \"read\" }`) {
				t.Errorf("the log line is no error naming the policy needed:\n%s", line)
			}
			if got := status(l.url); got == http.StatusOK {
				t.Errorf("a request answered %d with a token that may not read web", got)
			}
			t.Logf("latch: %s", line)
		})
	}
}

// aclLatch is a latch process and where its log goes.
type aclLatch struct {
	url, admin string
	p          *harness.Process
}

func (l *aclLatch) log() string {
	b, _ := os.ReadFile(l.p.Log)
	return string(b)
}

// startLatchWithToken runs bin/latch for the service web on c, with token
// in CONSUL_HTTP_TOKEN.
func startLatchWithToken(t *testing.T, c *harness.Consul, token string) *aclLatch {
	t.Helper()
	pub, admin := harness.FreePort(t), harness.FreePort(t)
	p := harness.StartProcessEnv(t, []string{"CONSUL_HTTP_ADDR=" + c.HTTPAddr, "CONSUL_HTTP_TOKEN=" + token},
		harness.Binaries(t)+"/latch", "-service", "web", "-listen", fmt.Sprintf("127.0.0.1:%d", pub),
		"-admin-listen", fmt.Sprintf("127.0.0.1:%d", admin), "-cookie-secret", harness.CookieSecret)
	return &aclLatch{url: fmt.Sprintf("http://127.0.0.1:%d/", pub), admin: fmt.Sprintf("http://127.0.0.1:%d", admin), p: p}
}

// status is the status code of GET url, 0 when it fails.
func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
