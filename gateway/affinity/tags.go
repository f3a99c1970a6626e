package affinity

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/latchgw/latch/gateway/config"
)

// ApplyTags is the catalog watch's callback: it routes the services whose
// tags ask for it and un-routes those that left. Config routes win over tag
// routes with the same host and prefix; conflicts are logged, counted and
// listed by the admin API.
func (rs *Routes) ApplyTags(ctx context.Context, services map[string][]string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.lastTags = services
	taken := map[string]string{} // host+prefix → who has it
	for _, rt := range rs.fileRoutes {
		taken[rt.host+rt.prefix] = "config route " + rt.name
	}
	var conflicts []string
	want := map[string][]*config.Spec{}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		routes, err := rs.cfg.RoutesFromTags(name, services[name])
		if err != nil {
			conflicts = append(conflicts, fmt.Sprintf("service %s: %v", name, err))
			continue
		}
		for _, r := range routes {
			key := r.Host() + r.Prefix()
			if owner, ok := taken[key]; ok {
				conflicts = append(conflicts, fmt.Sprintf("service %s: host %q path %q already routed by %s; tag route ignored",
					name, r.Route().Host, r.Route().PathPrefix, owner))
				continue
			}
			taken[key] = "service " + name + " (tags)"
			want[name] = append(want[name], r)
		}
	}
	if !slices.Equal(conflicts, rs.conflicts) {
		for _, c := range conflicts {
			rs.env.Log.Warn("route conflict", "conflict", c)
		}
	}
	rs.conflicts = conflicts
	rs.env.Metrics.TagConflicts(len(conflicts))

	// Drop routes of services that left or changed; add the new ones.
	for name, old := range rs.tagRoutes {
		if sameRoutes(old, want[name]) {
			delete(want, name)
			continue
		}
		for _, rt := range old {
			// A service whose tag routes changed keeps running (and its
			// backends' state) when new routes replace the old ones.
			if rt.service.removeRoute(rt) && !rs.isFileService(name) && len(want[name]) == 0 {
				rt.service.stop()
				delete(rs.services, name)
			}
		}
		delete(rs.tagRoutes, name)
		rs.env.Log.Info("tag routes removed", "service", name)
	}
	for name, routes := range want {
		svc, existed := rs.services[name]
		if !existed {
			svc = rs.serviceFor(name, routes[0])
		}
		for _, rc := range routes {
			rt := newRoute(rc, svc)
			svc.addRoute(rt)
			rs.tagRoutes[name] = append(rs.tagRoutes[name], rt)
			rs.env.Log.Info("tag route added", "service", name, "host", rc.Route().Host, "path_prefix", rc.Route().PathPrefix)
		}
		if !existed {
			svc.start(ctx)
		}
	}
	rs.storeTable()
	rs.retireTLSPools()
}

func (rs *Routes) isFileService(name string) bool {
	for _, rt := range rs.fileRoutes {
		if rt.service.name == name {
			return true
		}
	}
	return false
}

// sameRoutes reports whether running routes match wanted configs.
func sameRoutes(have []*Route, want []*config.Spec) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		// Every setting: a reload may change the defaults tag routes take.
		if !reflect.DeepEqual(have[i].spec.Route(), want[i].Route()) {
			return false
		}
	}
	return true
}
