package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
)

// Static is a Source over fixed backend lists: for running without Consul
// (-backends) and for tests, which change the lists with Set. Safe for
// concurrent use.
type Static struct {
	mu       sync.Mutex
	services map[string][]Backend
	watchers map[string][]chan struct{}
}

var _ Source = (*Static)(nil)

// NewStatic returns a Static source serving services (may be nil).
func NewStatic(services map[string][]Backend) *Static {
	s := &Static{services: map[string][]Backend{}, watchers: map[string][]chan struct{}{}}
	for name, bs := range services {
		s.Set(name, bs)
	}
	return s
}

// ParseStatic turns host:port addresses into passing backends of service,
// each identified by its address.
func ParseStatic(service string, addrs []string) ([]Backend, error) {
	out := make([]Backend, 0, len(addrs))
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%q is not host:port", a)
		}
		out = append(out, Backend{ID: a, Service: service, Addr: a, Weight: 1, Health: Passing})
	}
	return out, nil
}

// Set replaces the backends of service; running watches see the change.
func (s *Static) Set(service string, backends []Backend) {
	bs := slices.Clone(backends)
	sortBackends(bs)
	s.mu.Lock()
	s.services[service] = bs
	for _, ch := range s.watchers[service] {
		select {
		case ch <- struct{}{}:
		default: // a change is already pending
		}
	}
	s.mu.Unlock()
}

// Watch implements Source.
func (s *Static) Watch(ctx context.Context, service string, update func(Snapshot)) error {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[service] = append(s.watchers[service], ch)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watchers[service] = slices.DeleteFunc(s.watchers[service], func(c chan struct{}) bool { return c == ch })
		s.mu.Unlock()
	}()
	var last *Snapshot
	for {
		s.mu.Lock()
		snap := Snapshot{Service: service, Backends: s.services[service]}
		s.mu.Unlock()
		if last == nil || !last.Equal(snap) {
			last = &snap
			update(snap)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
