// Package httpgrammar owns latch's reading of RFC 9110's field grammar:
// token characters, field values, comma-separated lists and the Expect
// field. gateway/h1 parses client heads with it, gateway/forward writes and
// reads backend heads with it, and the gateway's screen checks Upgrade
// lists with it: one rule each, so the parser, the forwarder and the screen
// cannot drift apart (issue 24: the token table was written three times,
// and two readings of Expect disagreed). It depends on nothing of latch's
// and allocates nothing.
package httpgrammar

import "strings"

// tchar marks the token characters (RFC 9110 §5.6.2):
// "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
// "`" / "|" / "~" / DIGIT / ALPHA.
var tchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// IsTokenChar reports whether c is a token character (tchar).
func IsTokenChar(c byte) bool { return tchar[c] }

// IsToken reports whether s is a token (RFC 9110 §5.6.2: one or more
// tchar), as a method or a field name must be.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether v is a field value latch accepts from a
// client (RFC 9110 §5.5): no control character but HTAB, no DEL; obs-text
// (bytes 0x80-0xFF) allowed, as net/http's server accepts.
func ValidFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// SafeFieldValue reports whether v holds none of CR, LF and NUL, the bytes
// RFC 9110 §5.5 calls "invalid and dangerous" because they end or corrupt
// a header line: a recipient must reject or replace them before
// forwarding. Other control characters it lets a recipient retain; latch
// retains them in what it relays (a backend's response fields, values a
// client's server already let through), so only these three fail.
func SafeFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '\r' || b == '\n' || b == 0 {
			return false
		}
	}
	return true
}

// VisibleASCII reports whether s holds only visible ASCII (VCHAR, RFC
// 5234: 0x21-0x7E), as a request-target must (RFC 9112 §3.2; no space, no
// control byte, no byte over 0x7E).
func VisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (RFC 9110 §5.6.3: SP and HTAB, no
// other) from both ends of s.
func TrimOWS(s string) string { return strings.Trim(s, " \t") }

// ListHas reports whether the comma-separated lists in the field lines vv
// (RFC 9110 §5.6.1: the lines of one field are one list) hold tok as a
// member, case-insensitively, OWS around members ignored, as
// httpguts.HeaderValuesContainsToken reads Connection, Te and Upgrade.
func ListHas(vv []string, tok string) bool {
	for _, v := range vv {
		for v != "" {
			var m string
			m, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(TrimOWS(m), tok) {
				return true
			}
		}
	}
	return false
}

// Expect reads the Expect field's lines vv (RFC 9110 §10.1.1:
// Expect = #expectation, case-insensitive; the only expectation defined is
// 100-continue). Its members are those of one list across all lines (RFC
// 9110 §5.3, §5.6.1), OWS trimmed, empty members ignored.
//
// continues: a member is 100-continue, so the client may wait for a 100
// Continue before it sends the body. unmet: an expectation latch cannot
// meet, which RFC 9110 lets a server answer with 417: a member other than
// 100-continue (another name, a parameter, words not separated by commas),
// or a line that has text but no member at all (net/http answers 417 to
// "Expect: ," too, and gateway/h1 refuses whatever net/http refuses).
func Expect(vv []string) (continues, unmet bool) {
	for _, v := range vv {
		members := 0
		for rest := v; rest != ""; {
			var m string
			m, rest, _ = strings.Cut(rest, ",")
			if m = TrimOWS(m); m == "" {
				continue
			}
			members++
			if strings.EqualFold(m, "100-continue") {
				continues = true
			} else {
				unmet = true
			}
		}
		if members == 0 && v != "" {
			unmet = true
		}
	}
	return continues, unmet
}
