package accesslog

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchgw/latch/session"
)

// Entry is one access line's fields. appendAccess writes them the
// way slog's TextHandler or JSONHandler writes the same record (time,
// level, msg, then the attributes in this order), byte for byte, without
// going through slog: the access log is written once per request, and
// slog's generic path (attrs, handler state, a float through
// encoding/json) cost a fifth of latch's CPU per request.
type Entry struct {
	// Time is when the request ended: slog's JSONHandler would write an
	// error for years past 9999.
	Time time.Time
	// RequestID is the request's X-Request-Id.
	RequestID string
	// Method, Host, Path and Remote are the request's, as the server read
	// them (Remote is the peer's address).
	Method, Host, Path, Remote string
	// Route and Backend name the route and the backend that answered ("":
	// none).
	Route, Backend string
	// Status is the status sent to the client.
	Status int
	// Duration is the time from the request's arrival to now; it is logged
	// in seconds, as duration_s.
	Duration time.Duration
	// Session is the session kind ("": the request had no route state,
	// and the line has neither session nor session_hash); Hashed says
	// whether ID is logged, as session_hash (never raw).
	Session string
	Hashed  bool
	ID      session.ID
}

// appendAccess appends e as one line in the given format (log.format).
func appendAccess(b []byte, e *Entry, json bool) []byte {
	if json {
		return appendAccessJSON(b, e)
	}
	return appendAccessText(b, e)
}

func appendAccessText(b []byte, e *Entry) []byte {
	b = append(b, "time="...)
	b = appendLogTime(b, e.Time)
	b = append(b, " level=INFO msg=request request_id="...)
	b = appendTextString(b, e.RequestID)
	b = append(b, " method="...)
	b = appendTextString(b, e.Method)
	b = append(b, " host="...)
	b = appendTextString(b, e.Host)
	b = append(b, " path="...)
	b = appendTextString(b, e.Path)
	b = append(b, " remote="...)
	b = appendTextString(b, e.Remote)
	b = append(b, " route="...)
	b = appendTextString(b, e.Route)
	b = append(b, " backend="...)
	b = appendTextString(b, e.Backend)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " duration_s="...)
	b = strconv.AppendFloat(b, e.Duration.Seconds(), 'g', -1, 64)
	if e.Session != "" {
		b = append(b, " session="...)
		b = appendTextString(b, e.Session)
		if e.Hashed {
			b = append(b, " session_hash="...)
			b = appendSessionHash(b, e.ID[:])
		}
	}
	return append(b, '\n')
}

func appendAccessJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano) // JSONHandler's time: all the digits, trailing zeros dropped
	b = append(b, `","level":"INFO","msg":"request","request_id":"`...)
	b = appendJSONString(b, e.RequestID)
	b = append(b, `","method":"`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `","host":"`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `","path":"`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `","remote":"`...)
	b = appendJSONString(b, e.Remote)
	b = append(b, `","route":"`...)
	b = appendJSONString(b, e.Route)
	b = append(b, `","backend":"`...)
	b = appendJSONString(b, e.Backend)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"duration_s":`...)
	b = appendJSONFloat(b, e.Duration.Seconds())
	if e.Session != "" {
		b = append(b, `,"session":"`...)
		b = appendJSONString(b, e.Session)
		b = append(b, '"')
		if e.Hashed {
			b = append(b, `,"session_hash":"`...)
			b = appendSessionHash(b, e.ID[:])
			b = append(b, '"')
		}
	}
	return append(b, "}\n"...)
}

// appendLogTime appends t as TextHandler does: RFC 3339 with milliseconds, always
// three digits. RFC3339Nano is AppendFormat's fast layout but drops
// trailing zeros, so the time, truncated to the millisecond, gets a tenth
// of a millisecond more (four digits guaranteed) and the fourth is cut.
func appendLogTime(b []byte, t time.Time) []byte {
	const upToMillis = len("2006-01-02T15:04:05.000")
	n := len(b)
	b = t.Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+upToMillis], b[n+upToMillis+1:]...)
}

// appendTextString appends s as TextHandler does: bare when it reads
// unambiguously as one value, otherwise Go-quoted.
func appendTextString(b []byte, s string) []byte {
	if textNeedsQuote(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// textNeedsQuote is TextHandler's rule: empty, or holding a space, '=',
// '"', an ASCII control character, a Unicode space or unprintable rune,
// or a byte that is not UTF-8 (or U+FFFD itself).
func textNeedsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

const lowerHex = "0123456789abcdef"

// appendJSONString appends s's JSON escaping, without the quotes, as
// JSONHandler writes strings: '"', '\\' and control characters escaped
// (\n, \r, \t by name), each byte that is not UTF-8 as \ufffd, U+2028 and
// U+2029 escaped for JavaScript's sake; no HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	done := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[done:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			done = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[done:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[done:i]...)
			b = append(b, `\u202`...)
			b = append(b, lowerHex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		done = i
	}
	return append(b, s[done:]...)
}

// appendJSONFloat appends f as encoding/json does (JSONHandler formats
// floats through it): the shortest decimal without exponent, except below
// 1e-6 or from 1e21 up, where the exponent has no leading zero.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // e-07 → e-7
		b = b[:n-1]
	}
	return b
}

// appendSessionHash appends the session id's log form: the first 6 bytes
// of its SHA-256, in hex. The id is never logged raw.
func appendSessionHash(b []byte, id []byte) []byte {
	sum := sha256.Sum256(id)
	return hex.AppendEncode(b, sum[:6])
}

// lineBufs are scratch buffers for encoding one access line outside the
// batch's lock.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeAccess encodes e into a scratch buffer and hands it to the batch.
func (b *batchWriter) writeAccess(e *Entry, json bool) {
	p := lineBufs.Get().(*[]byte)
	*p = appendAccess((*p)[:0], e, json)
	_, _ = b.Write(*p)
	if cap(*p) <= 16<<10 { // a huge line's buffer is not kept
		lineBufs.Put(p)
	}
}
