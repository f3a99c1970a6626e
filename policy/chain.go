package policy

import (
	"errors"
	"net/http"
)

// Chain is one route's fallback chain over one Set: each picker in order,
// the next one when a picker declines or finds nothing, round_robin as the
// last resort. Build a new Chain per Set; Pick is safe for concurrent use.
type Chain struct {
	names      []string
	pickers    []Picker
	onFallback func(from, to string)
	rand       func() uint64
	slowStart  bool
}

// NewChain builds the pickers of names over set. onFallback (may be nil)
// is called on the request path when a picker hands over: count, don't block.
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
	for _, b := range set.Backends {
		if b.st.reg.opts.SlowStart > 0 {
			c.slowStart = true
			break
		}
	}
	return c, nil
}

// Pick returns a backend for a new session, or ErrNoBackend.
func (c *Chain) Pick(r *http.Request, skip Skip) (*Backend, error) {
	for i, p := range c.pickers {
		b, err := p.Pick(r, skip)
		if err == nil {
			if c.slowStart {
				b = c.ramp(p, r, skip, b)
			}
			return b, nil
		}
		if i+1 < len(c.pickers) && c.onFallback != nil && (errors.Is(err, ErrDecline) || errors.Is(err, ErrNoBackend)) {
			c.onFallback(c.names[i], c.names[i+1])
		}
	}
	return nil, ErrNoBackend
}

// ramp applies slow start: a backend still ramping up keeps the pick with
// probability equal to its ramp factor; otherwise one other pick is made.
func (c *Chain) ramp(p Picker, r *http.Request, skip Skip, b *Backend) *Backend {
	f := b.rampFactor(b.st.reg.now())
	if f >= 1 || float64(c.rand()>>11)/(1<<53) < f {
		return b
	}
	skip.Add(b)
	if other, err := p.Pick(r, skip); err == nil {
		return other
	}
	return b
}
