package h1

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/latchgw/latch/gateway/internal/httpgrammar"
)

// maxDiscard is how much of a body the handler left unread is read and
// dropped to keep the connection (net/http's maxPostHandlerReadBytes).
const maxDiscard = 256 << 10

// maxChunkLine bounds a chunk-size line and a trailer line.
const maxChunkLine = 4096

// body reads a request body from the connection's buffer and socket:
// Content-Length or chunked, never past its end (the next pipelined
// request stays in the buffer).
type body struct {
	c         *conn
	chunked   bool
	remaining int64 // Content-Length: bytes left; chunked: left in this chunk
	inChunk   bool  // chunked: inside a chunk's data
	done      bool  // read to its end
	closed    bool
	err       error // sticky
	expect    bool  // a 100 Continue is owed before the first read
	// malformed is set once the body's framing proved malformed: the
	// client gets its answer, not the handler's (the handler's reads may
	// run on a transport's goroutine, hence atomic).
	malformed atomic.Pointer[ParseError]
}

var errBodyAfterClose = http.ErrBodyReadAfterClose

func (b *body) reset(f framing) {
	*b = body{c: b.c, chunked: f.chunked, remaining: f.length, expect: f.expect}
	if f.length == 0 {
		b.done = true
	}
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyAfterClose
	}
	return b.read(p)
}

func (b *body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expect {
		b.expect = false
		b.c.resp.writeContinue()
	}
	if b.chunked {
		n, err := b.readChunked(p)
		if err != nil && err != io.EOF {
			b.err = err
			var pe *ParseError
			if errors.As(err, &pe) {
				b.malformed.Store(pe)
			}
		}
		return n, err
	}
	n, err := b.c.readBody(p[:min(int64(len(p)), b.remaining)])
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.done = true
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// readBody reads up to len(p) bytes: from the buffer first, then straight
// from the socket into p (the caller bounds p to the body).
func (c *conn) readBody(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	n, err := c.io.Read(p)
	if err != nil && n > 0 {
		c.rerr = err
		err = nil
	}
	return n, err
}

var (
	errChunk    = &ParseError{Kind: KindChunk, Status: http.StatusBadRequest, Detail: "malformed chunked encoding"}
	errChunkExt = &ParseError{Kind: KindChunkExt, Status: http.StatusBadRequest, Detail: "control byte in chunk extension"}
)

// readChunked reads chunk data (RFC 9112 §7.1): size lines in hex (at
// most 16 digits), extensions skipped but free of control bytes, CRLF
// everywhere, trailer fields read and dropped.
func (b *body) readChunked(p []byte) (int, error) {
	c := b.c
	for !b.inChunk {
		line, err := c.readLine(errChunk)
		if err != nil {
			return 0, err
		}
		n, err := chunkSize(line)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			if err := c.skipTrailers(); err != nil {
				return 0, err
			}
			b.done = true
			return 0, io.EOF
		}
		b.remaining, b.inChunk = n, true
	}
	n, err := c.readBody(p[:min(int64(len(p)), b.remaining)])
	b.remaining -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, err
	}
	if b.remaining == 0 {
		line, err := c.readLine(errChunk)
		if err != nil {
			return n, err
		}
		if len(line) != 0 {
			return n, errChunk // data longer than its size
		}
		b.inChunk = false
	}
	return n, nil
}

// chunkSize parses "hex[ws][;ext]" as net/http does, but refuses control
// bytes in the extension.
func chunkSize(line []byte) (int64, error) {
	var n uint64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i == 16 {
			return 0, errChunk
		}
		n = n<<4 | uint64(d)
	}
rest:
	if i == 0 || n > 1<<62 {
		return 0, errChunk
	}
	tail := line[i:]
	if len(tail) > 0 && tail[0] != ';' {
		// net/http trims trailing whitespace before the extension is cut:
		// "5 " passes, "5 ;x" does not.
		for _, c := range tail {
			if c != ' ' && c != '\t' {
				return 0, errChunk
			}
		}
		return int64(n), nil
	}
	if !validChunkExt(tail) {
		return 0, errChunkExt
	}
	return int64(n), nil
}

// validChunkExt reports whether ext (from its first ';') is chunk-ext of
// RFC 9112 §7.1.1: *( BWS ";" BWS name [ BWS "=" BWS value ] ), a name a
// token, a value a token or a quoted-string. net/http skips whatever
// follows the ';' (a bare ';', control bytes); a server behind latch may
// read such a line otherwise.
func validChunkExt(ext []byte) bool {
	i := 0
	ws := func() {
		for i < len(ext) && (ext[i] == ' ' || ext[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		start := i
		for i < len(ext) && httpgrammar.IsTokenChar(ext[i]) {
			i++
		}
		return i > start
	}
	for {
		ws()
		if i == len(ext) {
			return true
		}
		if ext[i] != ';' {
			return false
		}
		i++
		ws()
		if !token() {
			return false
		}
		ws()
		if i == len(ext) || ext[i] != '=' {
			continue
		}
		i++
		ws()
		if i < len(ext) && ext[i] == '"' {
			if i = quotedEnd(ext, i); i < 0 {
				return false
			}
		} else if !token() {
			return false
		}
	}
}

// quotedEnd returns the index after the quoted-string that starts at
// b[i] ('"'), or -1 if it is not one (RFC 9110 §5.6.4: qdtext is HTAB,
// SP and visible bytes but '"' and '\\', obs-text; quoted-pair escapes).
func quotedEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i++; i == len(b) || b[i] < ' ' && b[i] != '\t' || b[i] == 0x7f {
				return -1
			}
		case c < ' ' && c != '\t' || c == 0x7f:
			return -1
		}
	}
	return -1
}

// readLine returns the next CRLF-terminated line of the body, consuming
// it; a bare LF or a CR inside is bareErr.
func (c *conn) readLine(bareErr error) ([]byte, error) {
	for {
		for i := c.r; i < c.w; i++ {
			switch c.buf[i] {
			case '\n':
				if i == c.r || c.buf[i-1] != '\r' {
					return nil, bareErr
				}
				line := c.buf[c.r : i-1]
				c.r = i + 1
				return line, nil
			case '\r':
				if i+1 < c.w && c.buf[i+1] != '\n' {
					return nil, bareErr
				}
			}
		}
		if c.w-c.r >= maxChunkLine {
			return nil, errChunk
		}
		if err := c.fill(maxChunkLine); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

var errTrailerBareLF = bad(KindTrailer, "bare line break in trailer")

// skipTrailers reads the trailer section after the last chunk and drops
// it; each line must be a well-formed field, ended by CRLF.
func (c *conn) skipTrailers() error {
	for total := 0; ; {
		line, err := c.readLine(errTrailerBareLF)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		total += len(line)
		if total > c.srv.maxHeaderBytes() {
			return errChunk
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad(KindTrailer, "trailer line folded")
		}
		name, value, ok := cutByte(line, ':')
		if !ok || !httpgrammar.IsToken(string(name)) {
			return errChunk
		}
		if !httpgrammar.ValidFieldValue(string(value)) {
			return bad(KindTrailer, "control byte in trailer value")
		}
	}
}

func cutByte(b []byte, sep byte) (before, after []byte, ok bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// finish makes the connection ready for the next request after the
// handler: the rest of the body (up to maxDiscard) is read and dropped.
// canRead is false when the client waits for a 100 Continue it never got:
// its body will not come, the connection must close.
func (b *body) finish(canRead bool) bool {
	if b.done {
		return true
	}
	if b.err != nil || !canRead {
		return false
	}
	b.expect = false
	n, err := io.CopyN(io.Discard, readerFunc(b.read), maxDiscard+1)
	return errors.Is(err, io.EOF) && n <= maxDiscard
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
