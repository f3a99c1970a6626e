// Package discovery tells latch which backend servers exist for a service and
// whether they may take traffic. A Source publishes immutable Snapshots; the
// Consul source watches Consul's health endpoint with blocking queries and a
// Static source serves a fixed list (tests, running without Consul).
//
// discovery knows nothing of HTTP requests, cookies or Redis.
package discovery

import (
	"context"
	"slices"
)

// Health is what latch may do with a backend, derived from its checks.
type Health uint8

const (
	// Critical backends take no traffic at all.
	Critical Health = iota
	// Draining backends keep the sessions pinned to them but get no new ones
	// (Consul maintenance mode on the service or its node).
	Draining
	// Warning backends take traffic unless the warning policy excludes them.
	Warning
	// Passing backends take traffic.
	Passing
)

// String names the health state as logs and the admin API show it.
func (h Health) String() string {
	switch h {
	case Passing:
		return "passing"
	case Warning:
		return "warning"
	case Draining:
		return "draining"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// MarshalText makes Health readable in JSON (the admin API).
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// Backend is one instance of a service. ID is the Consul service ID: a
// backend that re-registers on another port keeps its identity (and with it
// its sessions, breaker and load statistics).
type Backend struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Addr    string `json:"address"` // host:port
	Weight  int    `json:"weight"`  // > 0
	Health  Health `json:"health"`
	// Unchecked: critical only because a check has not answered yet
	// (Consul reports a check it has not run as critical, with no output),
	// so its health is not known. It takes no traffic, as critical, but
	// says nothing about how many backends are healthy (panic mode).
	Unchecked bool              `json:"unchecked,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
}

// Equal reports whether two backends are the same in every field.
func (b *Backend) Equal(o *Backend) bool {
	if b.ID != o.ID || b.Service != o.Service || b.Addr != o.Addr ||
		b.Weight != o.Weight || b.Health != o.Health || b.Unchecked != o.Unchecked || !slices.Equal(b.Tags, o.Tags) ||
		len(b.Meta) != len(o.Meta) {
		return false
	}
	for k, v := range b.Meta {
		if ov, ok := o.Meta[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// Snapshot is the state of one service at one moment. It is immutable once
// published: Backends is sorted by ID and must not be modified.
type Snapshot struct {
	Service  string    `json:"service"`
	Backends []Backend `json:"backends"`
	// Index is the Consul index the snapshot was read at (0 for static sources).
	Index uint64 `json:"index"`
	// Stale is set while the source cannot reach Consul: Backends is the last
	// known good list.
	Stale bool `json:"stale"`
	// Held is set while Consul answers that the service has no instance
	// at all where it had some: Backends is the last good list, kept for
	// ConsulOptions.EmptyGrace (Stale is set too).
	Held bool `json:"held,omitempty"`
}

// Source publishes snapshots of a service.
//
// Watch blocks until ctx is done, calling update with the first snapshot as
// soon as it is known and then with every change (including changes of
// Stale). update is called from one goroutine at a time, never concurrently,
// and must not block for long. Watch returns ctx.Err() when ctx ends, or an
// error if the service can never be watched (bad configuration).
type Source interface {
	Watch(ctx context.Context, service string, update func(Snapshot)) error
}
