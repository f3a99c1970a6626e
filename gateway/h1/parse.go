package h1

import (
	"errors"
	"math"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// ParseError is a request rejected before the handler ran. Kind says why;
// Status is the answer the client gets.
type ParseError struct {
	Kind   Kind
	Status int
	Detail string
}

// Error says why the request was rejected, with the kind's name.
func (e *ParseError) Error() string { return "h1: " + e.Kind.String() + ": " + e.Detail }

// Kind classifies a rejected request.
type Kind uint8

// The kinds a request is rejected for. The ones marked "stricter" are
// requests net/http accepts but RFC 9112 says to reject (or lets a server
// reject) because intermediaries disagree on them: the smuggling vectors.
const (
	KindRequestLine      Kind = iota + 1 // malformed request line, method or version
	KindTarget                           // a request-target url.ParseRequestURI refuses
	KindTargetForm                       // stricter: non-ASCII target, "*" without OPTIONS, absolute-form not http(s), authority-form without CONNECT
	KindHeaderLine                       // a header line with no colon, a bad name or value
	KindBareLineBreak                    // stricter: a bare LF or CR in the head
	KindObsFold                          // stricter: a header line continued (obs-fold)
	KindHost                             // missing, repeated or malformed Host
	KindContentLength                    // a Content-Length that is not one decimal number
	KindDupLength                        // stricter: Content-Length repeated, even with equal values
	KindTransferCoding                   // a Transfer-Encoding other than exactly "chunked"
	KindLengthAndChunked                 // stricter: Transfer-Encoding with Content-Length
	KindHTTP10Chunked                    // stricter: Transfer-Encoding in an HTTP/1.0 request
	KindTooLarge                         // the head exceeds MaxHeaderBytes
	KindVersion                          // a major version other than 1
	KindExpect                           // partly stricter: an Expect with a member other than 100-continue
	KindChunk                            // a malformed chunk (a body error the handler sees)
	KindChunkExt                         // stricter: control bytes in a chunk extension
	KindTruncated                        // the client ended its stream inside a head
	KindTrailer                          // stricter: a trailer with a bare LF, obs-fold or control bytes
	KindEmptyHost                        // stricter: an empty Host with no authority in the target
	KindTooManyFields                    // more header fields than MaxHeaderFields
	KindBusy                             // the server's MaxHeadMemory is taken by other connections' big heads
)

var kindNames = [...]string{"", "request line", "request target", "request target form", "header line",
	"bare line break", "obs-fold", "host", "content-length", "duplicate content-length", "transfer-encoding",
	"content-length with transfer-encoding", "transfer-encoding in HTTP/1.0", "head too large", "version",
	"expect", "chunk", "chunk extension", "truncated", "trailer", "empty host", "too many fields", "head memory"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

func bad(k Kind, detail string) *ParseError {
	return &ParseError{Kind: k, Status: http.StatusBadRequest, Detail: detail}
}

// framing is how a request's body is delimited.
type framing struct {
	length  int64 // Content-Length, or -1 for chunked
	chunked bool
	expect  bool // Expect: 100-continue
	close   bool // the client asked to close after the response
}

// scanHead goes on looking for the end of the head in b from i, st the
// line-break state so far (0: in a line; 1: after CR; 2: after CRLF; 3:
// after CRLF CR). It returns the head's length once the blank line ends
// it, else 0 and where to resume. Every line must end in CRLF: a bare CR
// or LF is an error (RFC 9112 §2.2 lets a server accept a bare LF; latch
// refuses it, as intermediaries split lines on it differently).
func scanHead(b []byte, i, st int) (end, next, nst int, err error) {
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case st == 1 || st == 3:
			if c != '\n' {
				return 0, 0, 0, bad(KindBareLineBreak, "CR without LF")
			}
			if st == 3 {
				return i + 1, i + 1, 0, nil
			}
			st = 2
		case c == '\r':
			st++
		case c == '\n':
			return 0, 0, 0, bad(KindBareLineBreak, "LF without CR")
		default:
			st = 0
		}
	}
	return 0, i, st, nil
}

// parseHead parses a complete head (request line, fields, blank line) into
// req, whose Header must be empty. All strings are substrings of head but
// header keys not already canonical; header values share *strsp (grown to
// the number of fields), as net/http's share one array.
func parseHead(head string, req *http.Request, strsp *[]string, maxFields int) (framing, error) {
	var f framing
	line, rest, _ := strings.Cut(head, "\r\n")
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 || !httpgrammar.IsToken(method) {
		return f, bad(KindRequestLine, "malformed request line")
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return f, bad(KindRequestLine, "malformed HTTP version")
	}
	if major != 1 {
		return f, &ParseError{Kind: KindVersion, Status: http.StatusHTTPVersionNotSupported, Detail: "unsupported protocol version"}
	}
	req.Method, req.RequestURI, req.Proto, req.ProtoMajor, req.ProtoMinor = method, target, proto, major, minor
	if err := parseTarget(method, target, req.URL); err != nil {
		return f, err
	}

	// Fields: count the lines first, to give every key its values from one
	// backing array (as net/http does).
	h := req.Header
	fields := rest[:len(rest)-2] // drop the blank line's CRLF
	n := strings.Count(fields, "\r\n")
	if n > maxFields {
		// Issue 23: 10,000 fields of "X: a" went to the backend; only the
		// byte limit stopped more.
		return f, &ParseError{Kind: KindTooManyFields, Status: http.StatusRequestHeaderFieldsTooLarge, Detail: "too many header fields"}
	}
	if cap(*strsp) < n {
		*strsp = make([]string, n)
	}
	strs := (*strsp)[:n]
	var hosts, lengths, codings int
	for fields != "" {
		line, fields, _ = strings.Cut(fields, "\r\n")
		if line[0] == ' ' || line[0] == '\t' {
			return f, bad(KindObsFold, "header line folded (obs-fold)")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpgrammar.IsToken(name) {
			return f, bad(KindHeaderLine, "malformed header line")
		}
		value = httpgrammar.TrimOWS(value)
		if !httpgrammar.ValidFieldValue(value) {
			return f, bad(KindHeaderLine, "invalid header value")
		}
		key := name
		if !isCanonical(name) {
			key = textproto.CanonicalMIMEHeaderKey(name)
		}
		switch key {
		case "Host":
			hosts++
		case "Content-Length":
			lengths++
		case "Transfer-Encoding":
			codings++
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
		} else {
			strs[0] = value
			h[key] = strs[:1:1]
			strs = strs[1:]
		}
	}

	// Host (RFC 9112 §3.2): exactly one in HTTP/1.1, well formed.
	if hosts > 1 {
		return f, bad(KindHost, "too many Host headers")
	}
	hv, haveHost := h["Host"]
	if haveHost && !validHost(hv[0]) {
		return f, bad(KindHost, "malformed Host header")
	}
	if minor >= 1 && !haveHost && method != "CONNECT" {
		return f, bad(KindHost, "missing required Host header")
	}
	if haveHost && hv[0] == "" && req.URL.Host == "" {
		// An http URI has an authority: an empty Host names none (RFC
		// 9110 §7.2). net/http takes it; a backend would see no host.
		return f, bad(KindEmptyHost, "empty Host header")
	}
	req.Host = req.URL.Host
	if req.Host == "" && haveHost {
		req.Host = hv[0]
	}
	delete(h, "Host")

	// Body framing (RFC 9112 §6): chunked last and alone, or one length.
	if codings > 0 {
		te := h["Transfer-Encoding"]
		switch {
		case minor == 0:
			return f, bad(KindHTTP10Chunked, "Transfer-Encoding in HTTP/1.0")
		case len(te) != 1 || !strings.EqualFold(te[0], "chunked"):
			// Anything but exactly one "chunked" (a list, a parameter, an
			// empty value, another coding, the field repeated) is a framing
			// a peer may read otherwise: 400 and close, as HAProxy answers
			// (net/http: 501, which invites a retry of the same bytes).
			return f, bad(KindTransferCoding, "unsupported transfer encoding")
		case lengths > 0:
			return f, bad(KindLengthAndChunked, "Content-Length with Transfer-Encoding")
		}
		f.chunked, f.length = true, -1
		delete(h, "Transfer-Encoding")
		req.TransferEncoding = chunkedCoding
	} else if lengths > 0 {
		if lengths > 1 {
			return f, bad(KindDupLength, "Content-Length repeated")
		}
		n, ok := parseLength(h["Content-Length"][0])
		if !ok {
			return f, bad(KindContentLength, "bad Content-Length")
		}
		f.length = n
	}

	// Expect (RFC 9110 §10.1.1): 100-continue only, read as one list over
	// all its lines (httpgrammar.Expect), as forward reads it.
	if ev := h["Expect"]; len(ev) > 0 {
		continues, unmet := httpgrammar.Expect(ev)
		if unmet {
			return f, &ParseError{Kind: KindExpect, Status: http.StatusExpectationFailed, Detail: "unsupported Expect"}
		}
		f.expect = continues && minor >= 1 && f.length != 0
	}
	// Connection (RFC 9112 §9.3): HTTP/1.1 persists unless "close";
	// HTTP/1.0 closes unless "keep-alive". As net/http: Request.Close
	// from the comma-separated lists, the decision from the first value's
	// words as well.
	conn := h["Connection"]
	var first string
	if len(conn) > 0 {
		first = conn[0]
	}
	req.Close = httpgrammar.ListHas(conn, "close")
	if minor == 0 {
		req.Close = req.Close || !httpgrammar.ListHas(conn, "keep-alive")
		f.close = !hasToken(first, "keep-alive")
	} else {
		f.close = req.Close || hasToken(first, "close")
	}
	return f, nil
}

// parseVersion reads "HTTP/d.d", as net/http's ParseHTTPVersion.
func parseVersion(v string) (major, minor int, ok bool) {
	switch v {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	if len(v) != len("HTTP/X.Y") || !strings.HasPrefix(v, "HTTP/") || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

var chunkedCoding = []string{"chunked"}

var errTarget = bad(KindTarget, "malformed request target")

// parseTarget fills u from the request-target (RFC 9112 §3.2): origin-form
// for every method, absolute-form (http or https), authority-form only for
// CONNECT, asterisk-form only for OPTIONS; ASCII only. The URL is the one
// url.ParseRequestURI gives, built without allocating in the common case.
func parseTarget(method, target string, u *url.URL) error {
	if target == "" {
		if method == "CONNECT" {
			return bad(KindTargetForm, "empty authority-form") // net/http takes it
		}
		return errTarget
	}
	if !httpgrammar.VisibleASCII(target) {
		return bad(KindTargetForm, "request target not visible ASCII")
	}
	switch {
	case target[0] == '/':
		if simplePath(target, u) {
			return nil
		}
	case target == "*":
		if method != "OPTIONS" {
			return bad(KindTargetForm, "asterisk-form without OPTIONS")
		}
	case method == "CONNECT":
		pu, err := url.ParseRequestURI("http://" + target)
		if err != nil || pu.Host == "" || pu.Path != "" || pu.RawQuery != "" || pu.ForceQuery || pu.User != nil {
			return bad(KindTargetForm, "authority-form malformed")
		}
		*u = url.URL{Host: pu.Host}
		return nil
	default:
		s := strings.ToLower(target[:min(len(target), 8)])
		if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			return bad(KindTargetForm, "absolute-form not http or https")
		}
	}
	pu, err := url.ParseRequestURI(target)
	if err != nil {
		return errTarget
	}
	*u = *pu
	return nil
}

// simplePath sets u for an origin-form target whose path holds only bytes
// that url.ParseRequestURI keeps as they are (no escapes, no RawPath).
func simplePath(target string, u *url.URL) bool {
	path, query, hasQuery := strings.Cut(target, "?")
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			return false
		}
	}
	*u = url.URL{Path: path}
	if hasQuery {
		if query == "" && !strings.Contains(target[len(path)+1:], "?") {
			u.ForceQuery = true
		} else {
			u.RawQuery = query
		}
	}
	return true
}

// pathByte marks the bytes url's path escaping leaves alone: unreserved,
// and the reserved ones it does not escape in a path.
var pathByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~$&+,/:;=@", byte(c)) >= 0
	}
	return t
}()

// parseLength reads a Content-Length: decimal digits only, no sign, no
// list, no overflow of an int64.
func parseLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		d := int64(s[i] - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// hasToken reports whether token appears in v as a whole word, by
// net/http's rule (boundaries: space, comma, tab; case-insensitive).
func hasToken(v, token string) bool {
	if len(token) > len(v) {
		return false
	}
	boundary := func(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if sp > 0 && !boundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !boundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

// isCanonical reports whether name is already in canonical form (upper
// case first and after each '-', lower case elsewhere).
func isCanonical(name string) bool {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// validHost accepts the bytes net/http's httpguts.ValidHostHeader does.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !hostByte[h[i]] {
			return false
		}
	}
	return true
}

var hostByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!$%&'()*+,-.:;=[]_~", byte(c)) >= 0
	}
	return t
}()

var errLineTooLong = errors.New("h1: chunk line too long")

// errHeadMemory is a read buffer that may not grow: Server.MaxHeadMemory is
// taken.
var errHeadMemory = errors.New("h1: head memory exhausted")
