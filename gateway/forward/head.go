package forward

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/internal/httpgrammar"
	"github.com/latchgw/latch/policy"
)

// The outbound request head, the one rule set of both paths: writeHead
// emits it field by field into a head, which either writes the fast path's
// bytes or fills ReverseProxy's outbound header.

// head receives the outbound request's header fields: on the fast path as
// bytes on the backend connection, on the ReverseProxy path into out.
type head struct {
	bw  *bufio.Writer // fast path
	out http.Header   // ReverseProxy path
	key string
	val []byte // the ReverseProxy path's value being built
}

func (h *head) begin(k string) {
	if h.bw != nil {
		h.bw.WriteString(k)
		h.bw.WriteString(": ")
		return
	}
	h.key, h.val = k, h.val[:0]
}

func (h *head) add(s string) {
	if h.bw != nil {
		h.bw.WriteString(s)
		return
	}
	h.val = append(h.val, s...)
}

func (h *head) end() {
	if h.bw != nil {
		h.bw.WriteString("\r\n")
		return
	}
	h.out[h.key] = append(h.out[h.key], string(h.val))
}

func (h *head) field(k, v string) {
	h.begin(k)
	h.add(v)
	h.end()
}

// writeHead emits the header fields latch sends a backend for r, in this
// order and by these rules, whatever the path:
//   - the client's fields, minus Host and Content-Length (the caller's),
//     hop-by-hop ones and those the client's Connection header names
//     (X-Request-Id, latch's own, stays whatever the client says), and
//     minus Forwarded and X-Forwarded-*; minus the other fields that name
//     the client's address (X-Real-IP, True-Client-IP, CF-Connecting-IP,
//     …: clientAddrField) unless a trusted proxy sent them; minus any
//     field whose name, read with '-' for '_', is one of the above or
//     latch's X-Request-Id (Content_Length, X_Forwarded_For: underscoreAlias);
//   - Te: trailers when the client accepts trailers; Connection: Upgrade
//     and Upgrade when it asks for an upgrade (ReverseProxy path only);
//   - X-Forwarded-For, -Host, -Proto: from a trusted proxy its chain is
//     kept and its X-Forwarded-Proto and -Host believed; from anyone else
//     the chain starts at its address;
//   - with tracing on, Traceparent and Tracestate of the attempt's span
//     (x.traceparent) instead of the client's; off, the client's pass.
//
// A field value with CR, LF or NUL fails the request: nothing is sent.
func (f *Forwarder) writeHead(h *head, r *http.Request, x *exchange) error {
	connection := r.Header["Connection"]
	trailers, upgrade := false, ""
	for k, vv := range r.Header {
		switch k {
		case "Host", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		case "Traceparent", "Tracestate":
			if x.traceparent != "" {
				continue
			}
		case "Te":
			trailers = httpgrammar.ListHas(vv, "trailers")
			continue
		case "Upgrade":
			if httpgrammar.ListHas(connection, "upgrade") && len(vv) > 0 {
				upgrade = vv[0]
			}
			continue
		}
		if hopByHop(k) || (httpgrammar.ListHas(connection, k) && k != "X-Request-Id") {
			continue
		}
		if underscoreAlias(k) || clientAddrField(k) && !f.trustedPeer(r) {
			continue
		}
		for _, v := range vv {
			if !httpgrammar.SafeFieldValue(v) {
				return fmt.Errorf("request header %s: invalid value", k)
			}
			h.field(k, v)
		}
	}
	if trailers {
		h.field("Te", "trailers")
	}
	if upgrade != "" && httpgrammar.SafeFieldValue(upgrade) {
		h.field("Connection", "Upgrade")
		h.field("Upgrade", upgrade)
	}
	proto, host := f.scheme(r), r.Host
	h.begin("X-Forwarded-For")
	if f.trustedPeer(r) {
		for _, prior := range r.Header["X-Forwarded-For"] {
			if httpgrammar.SafeFieldValue(prior) {
				h.add(prior)
				h.add(", ")
			}
		}
		if v := r.Header.Get("X-Forwarded-Host"); v != "" && httpgrammar.SafeFieldValue(v) {
			host = v
		}
	}
	h.add(clientIP(r.RemoteAddr))
	h.end()
	h.field("X-Forwarded-Host", host)
	h.field("X-Forwarded-Proto", proto)
	if x.traceparent != "" {
		h.field("Traceparent", x.traceparent)
		if x.tracestate != "" {
			h.field("Tracestate", x.tracestate)
		}
	}
	return nil
}

// Scheme is the scheme the client used: https over TLS, or when a trusted
// proxy says so in X-Forwarded-Proto; else http. (The affinity cookie's
// Secure=auto follows it.)
func (f *Forwarder) Scheme(r *http.Request) string { return f.scheme(r) }

func (f *Forwarder) scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if f.trustedPeer(r) {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			return p
		}
	}
	return "http"
}

// trustedPeer reports whether r came from a configured trusted proxy
// (policy.TrustedPeer: the rule ClientIP follows too).
func (f *Forwarder) trustedPeer(r *http.Request) bool { return policy.TrustedPeer(r, f.trusted) }

// underscoreAlias reports whether k spells with underscores for hyphens a
// field latch writes, reads or strips: CGI, WSGI, PHP-FPM and many
// frameworks read '_' and '-' alike (Content_Length and Content-Length
// both become HTTP_CONTENT_LENGTH), so passed on, Content_Length or
// Transfer_Encoding is a second framing the backend may believe, and
// X_Forwarded_For or X_Real_IP a forged address, even from a trusted
// proxy, which passes the field on without reading it. Other names with
// underscores (X_Custom) pass: applications use them and they forge
// nothing of latch's (nginx drops every such name by default, Envoy
// passes them all); the name is rebuilt (an allocation) only when it has
// an underscore.
func underscoreAlias(k string) bool {
	if strings.IndexByte(k, '_') < 0 {
		return false
	}
	k = http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
	switch k {
	case "Host", "Content-Length", "X-Request-Id":
		return true
	}
	return hopByHop(k) || strings.HasPrefix(k, "Proxy-") || clientAddrField(k)
}

// clientAddrField reports whether k (canonical) names the client's address
// or the scheme and host it used, as front proxies and CDNs set them
// (Forwarded and X-Forwarded-* among them: latch writes its own). From an
// untrusted peer such a field is a lie a backend may believe (rate
// limits, audit logs, allow lists).
func clientAddrField(k string) bool {
	switch k {
	case "X-Real-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Cf-Connecting-Ipv6", "Fastly-Client-Ip",
		"X-Client-Ip", "X-Cluster-Client-Ip", "Client-Ip", "X-Original-Forwarded-For", "Forwarded-For",
		"X-Forwarded", "Forwarded", "X-Remote-Addr", "X-Remote-Ip", "X-Originating-Ip", "X-Proxyuser-Ip":
		return true
	}
	return strings.HasPrefix(k, "X-Forwarded-")
}

// clientIP is the address part of a RemoteAddr, without brackets.
func clientIP(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}

// outboundURL is the URL sent to the backend: r's, with the route's prefix
// stripped when it says so. It allocates only when stripping.
func outboundURL(spec *config.Spec, u *url.URL) *url.URL {
	if !spec.Strips() {
		return u
	}
	out := *u
	out.Path = spec.StripPrefix(u.Path)
	if u.RawPath != "" {
		out.RawPath = spec.StripPrefix(u.RawPath)
	}
	return &out
}

// hopByHop reports the headers that concern one connection only (RFC 9110
// §7.6.1), as ReverseProxy removes them.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
