package admin

import (
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/latchgw/latch/gateway/config"
)

// The admin API and web browsers. The admin listener is on loopback by
// default and needs no token there, so a web page open in an operator's
// browser on that machine could otherwise drive it (issue 23): a
// cross-site form POST drained a backend, and a page whose own name was
// rebound to 127.0.0.1 by DNS could read and change everything. guard
// refuses both; API clients (curl, scripts, Prometheus) send neither an
// Origin nor a form, and name the listener by address or localhost.

// guard wraps the admin router (c is the admin section):
//   - a request that changes state (any method but GET, HEAD, OPTIONS) from
//     another origin than the listener's own is refused 403: net/http's
//     CrossOriginProtection (Sec-Fetch-Site, else Origin against Host);
//   - so is one whose body is a type a browser sends cross-site without
//     asking first (a form or text/plain): the API takes none, and a browser
//     too old to send Sec-Fetch-Site or Origin still cannot post one;
//   - without an admin token, a Host that is neither an IP address, nor
//     localhost, nor in admin.allowed_hosts is refused 403: only a DNS name
//     can be rebound. With a token a rebound page lacks the token anyway.
func guard(next http.Handler, c config.Admin) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusForbidden, "admin: cross-origin request refused\n")
	}))
	checkHost := c.Token == ""
	allowed := c.AllowedHosts
	guarded := cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unsafeMethod(r.Method) && formType(r.Header.Get("Content-Type")) {
			writeText(w, http.StatusUnsupportedMediaType, "admin: form and text/plain bodies are refused (the API takes none)\n")
			return
		}
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if checkHost && !adminHostAllowed(r.Host, allowed) {
			writeText(w, http.StatusForbidden, "admin: host name not allowed without an admin token (admin.allowed_hosts)\n")
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// unsafeMethod reports whether a request with method m may change state.
func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// formType reports whether a Content-Type is one of the CORS-safelisted
// types a cross-site page may send without a preflight.
func formType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true // unparsable: not a type the API takes either
	}
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return true
	}
	return false
}

// adminHostAllowed reports whether a request's Host names the admin
// listener in a way DNS rebinding cannot: an IP address, localhost (RFC
// 6761: never resolved by DNS), or a configured name.
func adminHostAllowed(host string, allowed []string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" || net.ParseIP(host) != nil {
		return true // HTTP/1.0 without Host, or an address
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, host) })
}
