package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
)

// Cookie is what latch's affinity cookie carries.
type Cookie struct {
	ID   ID
	Hint Hint
	// Others are the hints of the other services whose routes share the
	// cookie (same name and path), most recent first; 0 ends the list.
	// Issue 17: routes sharing the default cookie overwrote each other's
	// hint, so a store that lost its data moved their sessions.
	Others [MaxOtherHints]Hint
	// Issued is when the cookie was (re)issued, in Unix seconds: a hint is
	// honoured only while the cookie is younger than the session TTL.
	Issued uint32
	// OldSecret, set by Decode, says a secret other than the first signed
	// the cookie: it is reissued under the first (Decide), so a rotation
	// finishes. Not encoded.
	OldSecret bool
}

// MaxOtherHints bounds the other routes' hints one cookie carries; the
// least recent is dropped beyond it.
const MaxOtherHints = 3

const (
	cookieVersion = 1 // one hint
	hintsVersion  = 2 // a hint and others
	tagLen        = 16
	payloadLen    = 1 + 16 + 8 + 4
	rawLen        = payloadLen + tagLen
	encodedLen    = (rawLen*8 + 5) / 6 // base64url, no padding: 60
	maxRawLen     = rawLen + 8*MaxOtherHints
	maxEncodedLen = (maxRawLen*8 + 5) / 6
)

// hintCount is the number of hints c carries.
func (c *Cookie) hintCount() int {
	n := 1
	for n <= MaxOtherHints && c.Others[n-1] != 0 {
		n++
	}
	return n
}

// Codec signs and verifies cookie values:
//
//	base64url( version=1 | id[16] | hint[8] | issued[4] | HMAC-SHA256(secret, those 29 bytes)[:16] )
//
// or, when the cookie carries other routes' hints (Cookie.Others),
//
//	base64url( version=2 | id[16] | hint[8] | issued[4] | other hints[8 each, 1-3] | HMAC-SHA256(secret, those bytes)[:16] )
//
// It signs with the first secret and accepts any (rotation: add the new
// secret first, drop the old one after the cookie lifetime; a cookie signed
// with an old one is reissued under the new on its next request, so
// browser-session cookies move over too). Verification is
// constant-time. Safe for concurrent use.
type Codec struct {
	secrets [][]byte
	scratch sync.Pool // *scratch
}

// scratch is what signing or checking one cookie needs: its bytes, and an
// HMAC per secret (made when first used). Slices handed to hash.Hash
// escape, so stack arrays would be allocated on every call; pooled ones
// are not.
type scratch struct {
	raw  [maxRawLen + 2]byte // +2: base64 decodes in blocks
	sum  [sha256.Size]byte
	enc  [maxEncodedLen]byte
	macs []hash.Hash // by secret
}

// NewCodec returns a codec; every secret must have at least 16 bytes.
func NewCodec(secrets [][]byte) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no cookie secret")
	}
	c := &Codec{}
	c.scratch.New = func() any { return &scratch{macs: make([]hash.Hash, len(c.secrets))} }
	for _, s := range secrets {
		if len(s) < 16 {
			return nil, errors.New("cookie secrets must be at least 16 bytes")
		}
		key := append([]byte(nil), s...)
		c.secrets = append(c.secrets, key)
	}
	return c, nil
}

// RandomSecret returns 32 random bytes.
func RandomSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// tag computes the HMAC of payload with secret i into sc.sum.
func (c *Codec) tag(sc *scratch, i int, payload []byte) {
	h := sc.macs[i]
	if h == nil {
		h = hmac.New(sha256.New, c.secrets[i])
		sc.macs[i] = h
	}
	h.Reset()
	h.Write(payload)
	h.Sum(sc.sum[:0])
}

// Encode signs v.
func (c *Codec) Encode(v Cookie) string {
	var b [maxEncodedLen]byte
	return string(c.AppendEncode(b[:0], v))
}

// AppendEncode appends v, signed, to dst (a Set-Cookie line built in one
// allocation).
func (c *Codec) AppendEncode(dst []byte, v Cookie) []byte {
	sc := c.scratch.Get().(*scratch)
	defer c.scratch.Put(sc)
	raw := &sc.raw
	raw[0] = cookieVersion
	copy(raw[1:17], v.ID[:])
	binary.BigEndian.PutUint64(raw[17:25], uint64(v.Hint))
	binary.BigEndian.PutUint32(raw[25:29], v.Issued)
	payload := payloadLen
	if n := v.hintCount(); n > 1 {
		raw[0] = hintsVersion
		for _, h := range v.Others[:n-1] {
			binary.BigEndian.PutUint64(raw[payload:payload+8], uint64(h))
			payload += 8
		}
	}
	c.tag(sc, 0, raw[:payload])
	copy(raw[payload:payload+tagLen], sc.sum[:tagLen])
	n := base64.RawURLEncoding.EncodedLen(payload + tagLen)
	base64.RawURLEncoding.Encode(sc.enc[:n], raw[:payload+tagLen])
	return append(dst, sc.enc[:n]...)
}

// Decode verifies a cookie value. Anything malformed, oversized, of another
// version, unsigned or signed with an unknown secret gives ok=false.
func (c *Codec) Decode(value string) (Cookie, bool) {
	others := 0
	if len(value) != encodedLen {
		for others = 1; others <= MaxOtherHints && len(value) != base64.RawURLEncoding.EncodedLen(rawLen+8*others); others++ {
		}
		if others > MaxOtherHints {
			return Cookie{}, false
		}
	}
	sc := c.scratch.Get().(*scratch)
	defer c.scratch.Put(sc)
	enc := sc.enc[:len(value)]
	copy(enc, value) // []byte(value) would allocate
	raw := &sc.raw
	payload := payloadLen + 8*others
	version := byte(cookieVersion)
	if others > 0 {
		version = hintsVersion
	}
	n, err := base64.RawURLEncoding.Decode(raw[:], enc)
	if err != nil || n != payload+tagLen || raw[0] != version {
		return Cookie{}, false
	}
	signer := -1
	for i := range c.secrets {
		c.tag(sc, i, raw[:payload])
		if hmac.Equal(sc.sum[:tagLen], raw[payload:payload+tagLen]) {
			signer = i
			break
		}
	}
	if signer < 0 {
		return Cookie{}, false
	}
	v := Cookie{OldSecret: signer > 0}
	copy(v.ID[:], raw[1:17])
	v.Hint = Hint(binary.BigEndian.Uint64(raw[17:25]))
	v.Issued = binary.BigEndian.Uint32(raw[25:29])
	for i := range others {
		if v.Others[i] = Hint(binary.BigEndian.Uint64(raw[payloadLen+8*i:])); v.Others[i] == 0 {
			return Cookie{}, false // 0 ends the list: it is never encoded
		}
	}
	return v, true
}
