package policy

import (
	"errors"
	"net/http"
)

// Chain is one route's fallback chain over one Set: its pickers in order,
// moving to the next when one declines, with round_robin as the last
// resort. It also applies slow start to whatever is picked. Build a new
// Chain per Set; Pick is safe for concurrent use and, like the pickers,
// neither locks nor allocates.
type Chain struct {
	names      []string
	pickers    []Picker
	onFallback func(from, to string)
	rand       func() uint64
	slowStart  bool
}

// NewChain validates names (the error names an unknown policy) and builds
// their pickers over set; round_robin is appended as the last resort when
// it is not already last. onFallback (may be nil) is called on the request
// path each time a picker hands over to the next: count and log, nothing
// that blocks.
func NewChain(names []string, set *Set, opts BuildOptions, onFallback func(from, to string)) (*Chain, error) {
	if err := ValidatePolicy(names); err != nil {
		return nil, err
	}
	c := &Chain{onFallback: onFallback, rand: randFunc(opts)}
	c.names = append(c.names, names...)
	if names[len(names)-1] != "round_robin" {
		c.names = append(c.names, "round_robin")
	}
	for _, n := range c.names {
		c.pickers = append(c.pickers, Builders[n](set, opts))
	}
	c.slowStart = set.reg != nil && set.reg.options().SlowStart > 0
	return c, nil
}

// Names is the chain's policies in order, the implicit round_robin
// included.
func (c *Chain) Names() []string { return append([]string(nil), c.names...) }

// Pick returns a backend for a new session, or ErrNoBackend. A picker that
// declines (ErrDecline) hands over to the next one. ErrNoBackend from any
// picker ends the chain at once: all pickers choose among the same usable
// backends, so the next one would find none either.
func (c *Chain) Pick(r *http.Request, skip Skip) (*Backend, error) {
	for i, p := range c.pickers {
		b, err := p.Pick(r, skip)
		switch {
		case err == nil:
			if c.slowStart {
				b = c.ramp(p, r, skip, b)
			}
			return b, nil
		case errors.Is(err, ErrNoBackend):
			return nil, ErrNoBackend
		}
		if i+1 < len(c.pickers) && c.onFallback != nil {
			c.onFallback(c.names[i], c.names[i+1])
		}
	}
	return nil, ErrNoBackend
}

// ramp applies slow start: a backend still ramping up keeps the pick with
// probability equal to its ramp factor (elapsed/window); otherwise the
// same picker chooses again without it, and if it finds nothing else the
// ramping backend serves after all.
func (c *Chain) ramp(p Picker, r *http.Request, skip Skip, b *Backend) *Backend {
	f := b.rampFactor()
	if f >= 1 || unit(c.rand()) < f {
		return b
	}
	skip.Add(b)
	if other, err := p.Pick(r, skip); err == nil {
		return other
	}
	return b
}
