package discovery

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// FromEntry derives a Backend from one entry of Consul's
// /v1/health/service/<name> answer. It is a pure function:
//
//   - every check passing → Passing; a warning and no critical → Warning;
//   - a critical maintenance check (service or node maintenance mode) and
//     no other critical check → Draining;
//   - any other critical check → Critical; Unchecked as well when every
//     such check has no output yet (Consul has not run it: a check starts
//     critical until its first answer).
//
// Only the node's checks and this service's own checks count: another
// service's failing check on the same node says nothing about this one.
// Weight is Consul's Weights.Passing (Weights.Warning while warning), 1
// when unset.
func FromEntry(e *api.ServiceEntry) Backend {
	s := e.Service
	host := s.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	b := Backend{
		ID:        s.ID,
		Service:   s.Service,
		Addr:      net.JoinHostPort(host, strconv.Itoa(s.Port)),
		Health:    healthOf(e.Checks, s.ID),
		Unchecked: unchecked(e.Checks, s.ID),
		Tags:      slices.Clone(s.Tags),
	}
	if len(s.Meta) > 0 {
		b.Meta = make(map[string]string, len(s.Meta))
		for k, v := range s.Meta {
			b.Meta[k] = v
		}
	}
	b.Weight = s.Weights.Passing
	if b.Health == Warning {
		b.Weight = s.Weights.Warning
	}
	if b.Weight <= 0 {
		b.Weight = 1
	}
	return b
}

// unchecked reports whether the checks are critical only by checks that
// have not answered yet: critical with no output. Every check Consul has
// run has some (an HTTP check's error, "TTL expired", a script's output).
func unchecked(checks api.HealthChecks, serviceID string) bool {
	pending := false
	for _, c := range checks {
		if c.ServiceID != "" && c.ServiceID != serviceID || c.Status != api.HealthCritical ||
			c.CheckID == api.NodeMaint || strings.HasPrefix(c.CheckID, api.ServiceMaintPrefix) {
			continue
		}
		if c.Output != "" {
			return false
		}
		pending = true
	}
	return pending
}

func healthOf(checks api.HealthChecks, serviceID string) Health {
	h := Passing
	maint := false
	for _, c := range checks {
		if c.ServiceID != "" && c.ServiceID != serviceID {
			continue
		}
		switch c.Status {
		case api.HealthCritical:
			if c.CheckID == api.NodeMaint || strings.HasPrefix(c.CheckID, api.ServiceMaintPrefix) {
				maint = true
				continue
			}
			return Critical
		case api.HealthWarning:
			h = Warning
		case api.HealthMaint:
			maint = true
		}
	}
	if maint {
		return Draining
	}
	return h
}

// Equal reports whether two snapshots describe the same backends with the
// same staleness; the Consul index is ignored, so a watch publishes only
// real changes.
func (s Snapshot) Equal(o Snapshot) bool {
	if s.Service != o.Service || s.Stale != o.Stale || s.Held != o.Held || len(s.Backends) != len(o.Backends) {
		return false
	}
	for i := range s.Backends {
		if !s.Backends[i].Equal(&o.Backends[i]) {
			return false
		}
	}
	return true
}

// sortBackends orders backends by ID, as Snapshot requires.
func sortBackends(bs []Backend) {
	slices.SortFunc(bs, func(a, b Backend) int { return strings.Compare(a.ID, b.ID) })
}
