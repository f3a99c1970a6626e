// Package session is latch's affinity layer. For a request the gateway asks
// it twice: Affinity.Resolve before forwarding (decide.go: the cookie is
// checked (cookie.go), the pin looked up in the local cache (cache.go) or
// the Store, and Decide says keep, restore from the cookie's hint, re-pin
// or new), and Affinity.Commit once a backend answered (the pin written in
// the background, batched; the cookie returned). In between, a policy's
// pick for a session not kept goes through Decision.Picked (pure: a
// detour, or a re-pin needed), and a re-pin through Affinity.Repick (the
// store's compare-and-swap), which gateway/affinity runs between two
// passes of the forwarding loop, never from a picker. affinity.go holds the
// cache, the store's breaker (breaker.go) and the replay of pins made while
// the store was down; store.go the Store interface, its optional powers
// and the memory store; redis.go and redisjobs.go the Redis store, where
// go-redis stays. It never picks backends.
package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// ID is a session id: 128 random bits.
type ID [16]byte

// NewID returns a fresh random id.
func NewID() ID {
	var id ID
	_, _ = rand.Read(id[:]) // crypto/rand never fails on Linux
	return id
}

// IDFromValue derives a session id from an application's own session cookie
// value (sticky "learn" mode): the first 16 bytes of its SHA-256, so the
// value itself is never stored.
func IDFromValue(v string) ID {
	sum := sha256.Sum256([]byte(v))
	var id ID
	copy(id[:], sum[:16])
	return id
}

// String is the id in base64url without padding (22 characters).
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// ParseID parses the String form.
func ParseID(s string) (ID, bool) {
	var id ID
	if len(s) != 22 {
		return id, false
	}
	n, err := base64.RawURLEncoding.Decode(id[:], []byte(s))
	return id, err == nil && n == len(id)
}

// Hint names a backend in the cookie without revealing its address: the
// first 8 bytes of SHA-256("latch-hint\x00"+service+"\x00"+backendID). The
// gateway maps hints back only to backends of the current snapshot, so a
// hint can never select anything else. 0 means no hint.
type Hint uint64

// HintFor returns the hint of a backend of service.
func HintFor(service, backendID string) Hint {
	h := sha256.New()
	h.Write([]byte("latch-hint\x00"))
	h.Write([]byte(service))
	h.Write([]byte{0})
	h.Write([]byte(backendID))
	var sum [sha256.Size]byte
	return Hint(binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) | 1) // never 0
}
