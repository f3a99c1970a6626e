package policy

// MaxSkip is how many tried backends a Skip remembers: the gateway's retry
// limit.
const MaxSkip = 10

// Skip is the set of backends already tried for one request. It is passed
// by value and lives on the stack; the zero value is empty. Backends added
// beyond MaxSkip are not remembered.
type Skip struct {
	b [MaxSkip]*Backend
	n uint8
}

// Add records b as tried.
func (s *Skip) Add(b *Backend) {
	if b != nil && int(s.n) < len(s.b) && !s.Has(b) {
		s.b[s.n] = b
		s.n++
	}
}

// Has reports whether b was tried. Backends are compared by identity
// within a Set, and by ID across Sets (a retry may meet a newer Set).
func (s Skip) Has(b *Backend) bool {
	for _, t := range s.b[:s.n] {
		if t == b || t.st == b.st {
			return true
		}
	}
	return false
}

// Len is the number of backends recorded.
func (s Skip) Len() int { return int(s.n) }

// usable reports whether a picker may return b.
func usable(b *Backend, skip *Skip) bool {
	return b.CanTake() && (skip.n == 0 || !skip.Has(b))
}
