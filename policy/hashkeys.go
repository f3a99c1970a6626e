package policy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// The three hash pickers share the Set's consistent-hash table (hash.go)
// and differ in their key. Each declines when the request has no key.

// ipHash keys on the client address (see ClientIP).
type ipHash struct {
	set     *Set
	table   *hashTable
	trusted []netip.Prefix
}

var _ Picker = (*ipHash)(nil)

func newIPHash(set *Set, opts BuildOptions) Picker {
	return &ipHash{set: set, table: set.hashTable(), trusted: opts.TrustedProxies}
}

func (h *ipHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	a := ClientIP(r, h.trusted)
	if !a.IsValid() {
		return nil, ErrDecline
	}
	b16 := a.As16()
	return h.table.pick(h.set.Backends, xxhash.Sum64(b16[:]), &skip)
}

// headerHash keys on the first value of a request header.
type headerHash struct {
	set   *Set
	table *hashTable
	name  string
}

var _ Picker = (*headerHash)(nil)

func newHeaderHash(set *Set, opts BuildOptions) Picker {
	return &headerHash{set: set, table: set.hashTable(), name: http.CanonicalHeaderKey(opts.HashHeader)}
}

func (h *headerHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	vs := r.Header[h.name]
	if len(vs) == 0 || vs[0] == "" {
		return nil, ErrDecline
	}
	return h.table.pick(h.set.Backends, xxhash.Sum64String(vs[0]), &skip)
}

// cookieHash keys on the value of a request cookie.
type cookieHash struct {
	set   *Set
	table *hashTable
	name  string
}

var _ Picker = (*cookieHash)(nil)

func newCookieHash(set *Set, opts BuildOptions) Picker {
	return &cookieHash{set: set, table: set.hashTable(), name: opts.HashCookie}
}

func (h *cookieHash) Pick(r *http.Request, skip Skip) (*Backend, error) {
	if h.name == "" {
		return nil, ErrDecline
	}
	v := CookieValue(r.Header["Cookie"], h.name)
	if v == "" {
		return nil, ErrDecline
	}
	return h.table.pick(h.set.Backends, xxhash.Sum64String(v), &skip)
}

// CookieValue finds a cookie in Cookie header lines without allocating
// (http.Request.Cookie parses every cookie into new strings). The first
// cookie of that name wins; surrounding quotes are dropped.
func CookieValue(lines []string, name string) string {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}
