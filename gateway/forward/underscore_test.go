package forward

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/latchgw/latch/gateway/config"
)

// Issue 22: Content_Length reached backends. CGI, WSGI, PHP-FPM and many
// frameworks read a field name with '_' for '-' as the same variable
// (both Content_Length and Content-Length become HTTP_CONTENT_LENGTH), so
// such a spelling of a field latch writes, reads or strips smuggles a
// second framing or a forged address past it. Those spellings are dropped,
// from every peer and on both paths; other names with underscores pass.
func TestUnderscoreAliasesDropped(t *testing.T) {
	dropped := []string{
		"Content_Length", "Transfer_Encoding", "Keep_Alive", "Proxy_Connection", "Proxy_Authorization",
		"X_Forwarded_For", "X-Forwarded_Proto", "X_FORWARDED_HOST", "X_Real_Ip", "X_Request_Id",
	}
	kept := map[string]string{"X_Custom": "1", "Accept_Language": "de", "X-Request-Id": "rid-1"}
	for _, p := range paths {
		for _, peer := range []struct {
			name   string
			mutate func(*config.Config)
		}{
			{"untrusted peer", nil},
			{"trusted proxy", func(c *config.Config) { c.TrustedProxies = config.List{"127.0.0.0/8"} }},
		} {
			t.Run(p.name+"/"+peer.name, func(t *testing.T) {
				backend := strings.TrimPrefix(echo(t, "b0").URL, "http://")
				r := newRig(t, p.slow, config.Route{}, peer.mutate, backend)
				req := get("/", kept)
				for _, k := range dropped {
					req.Header.Set(k, "6")
				}
				w, res := r.do(req)
				if w.Code != 200 || res.Status != 200 {
					t.Fatalf("status %d (result %d); want 200", w.Code, res.Status)
				}
				saw, leaked := strings.ToLower(w.Body.String()), []string(nil)
				for _, k := range dropped {
					if strings.Contains(saw, "\n"+strings.ToLower(k)+": ") {
						leaked = append(leaked, k)
					}
				}
				if len(leaked) > 0 {
					t.Errorf("backend received %v:\n%s", leaked, w.Body)
				}
				for k, v := range kept {
					if want := fmt.Sprintf("\n%s: %s\n", http.CanonicalHeaderKey(k), v); !strings.Contains(w.Body.String(), want) {
						t.Errorf("backend saw:\n%s\nwant %q", w.Body, want)
					}
				}
			})
		}
	}
}
