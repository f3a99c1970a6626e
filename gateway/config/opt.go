package config

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// Opt is a setting that may be left unset, so that "unset" (inherit the
// default) differs from an explicit zero: a route can say `timeout: 0` or
// `retry.on_status: []` under defaults that set them. Every field with a
// default, and every per-route setting, is an Opt; once a config is
// compiled every Opt in it holds its resolved value.
type Opt[T any] struct {
	v   T
	set bool
}

// Set returns an Opt holding v.
func Set[T any](v T) Opt[T] { return Opt[T]{v: v, set: true} }

// Get returns the value (T's zero value when unset).
func (o Opt[T]) Get() T { return o.v }

// IsSet reports whether the value was given.
func (o Opt[T]) IsSet() bool { return o.set }

// or returns o when set, else d.
func (o Opt[T]) or(d Opt[T]) Opt[T] {
	if o.set {
		return o
	}
	return d
}

// orValue returns o when set, else v.
func (o Opt[T]) orValue(v T) Opt[T] {
	if o.set {
		return o
	}
	return Set(v)
}

// UnmarshalYAML decodes the value; a null leaves the Opt unset (yaml.v3
// does not call it for null).
func (o *Opt[T]) UnmarshalYAML(n *yaml.Node) error {
	var v T
	if err := n.Decode(&v); err != nil {
		return err
	}
	o.v, o.set = v, true
	return nil
}

// MarshalYAML writes the value, or nothing when unset.
func (o Opt[T]) MarshalYAML() (any, error) {
	if !o.set {
		return nil, nil
	}
	return o.v, nil
}

// List is a list of strings that YAML may also give as one
// comma-separated string ("policy: p2c, round_robin"), as the environment
// variables do.
type List []string

// UnmarshalYAML accepts a sequence or a comma-separated scalar.
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = SplitList(n.Value)
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// SplitList splits "a, b,c" into [a b c], dropping empty items.
func SplitList(s string) List {
	var out List
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
