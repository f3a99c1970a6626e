package gateway

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Consul tags that route a service with no change to latch's config.
const (
	tagRoute       = "latch.route="        // path prefix, e.g. latch.route=/api (one route per tag)
	tagHost        = "latch.host="         // host, e.g. latch.host=shop.example.com
	tagPolicy      = "latch.policy="       // policy chain, e.g. latch.policy=least_response_time,round_robin
	tagSticky      = "latch.sticky="       // true (default) or false
	tagStripPrefix = "latch.strip_prefix=" // true or false (default)
)

// RoutesFromTags turns one service's Consul tags into routes. It returns
// no routes and no error for a service without latch.route or latch.host
// tags; bad values fail with the tag named.
func RoutesFromTags(service string, tags []string, defaults RouteSettings) ([]Route, error) {
	var prefixes []string
	host := ""
	base := Route{Service: service, Name: service}
	for _, t := range tags {
		switch {
		case strings.HasPrefix(t, tagRoute):
			prefixes = append(prefixes, strings.TrimPrefix(t, tagRoute))
		case strings.HasPrefix(t, tagHost):
			host = strings.TrimPrefix(t, tagHost)
		case strings.HasPrefix(t, tagPolicy):
			base.Policy = splitList(strings.TrimPrefix(t, tagPolicy))
		case strings.HasPrefix(t, tagSticky):
			b, err := strconv.ParseBool(strings.TrimPrefix(t, tagSticky))
			if err != nil {
				return nil, fmt.Errorf("tag %q: not true or false", t)
			}
			base.Sticky.Enabled = &b
		case strings.HasPrefix(t, tagStripPrefix):
			b, err := strconv.ParseBool(strings.TrimPrefix(t, tagStripPrefix))
			if err != nil {
				return nil, fmt.Errorf("tag %q: not true or false", t)
			}
			base.StripPrefix = b
		}
	}
	if len(prefixes) == 0 && host == "" {
		return nil, nil
	}
	if len(prefixes) == 0 {
		prefixes = []string{"/"}
	}
	slices.Sort(prefixes)
	prefixes = slices.Compact(prefixes)
	var out []Route
	for _, p := range prefixes {
		r := base
		r.Host, r.PathPrefix, r.fromTags = host, p, true
		r.RouteSettings.fill(defaults)
		if errs := r.validate("tags of service "+service, false); len(errs) > 0 {
			return nil, errs[0]
		}
		out = append(out, r)
	}
	return out, nil
}

// applyTags is the catalog watch's callback: it routes the services whose
// tags ask for it and un-routes those that left. Config routes win over tag
// routes with the same host and prefix; conflicts are logged, counted and
// listed by the admin API.
func (g *Gateway) applyTags(services map[string][]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	taken := map[string]string{} // host+prefix → who has it
	for _, rt := range g.fileRoutes {
		taken[rt.host+rt.prefix] = "config route " + rt.cfg.Name
	}
	var conflicts []string
	want := map[string][]Route{}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		routes, err := RoutesFromTags(name, services[name], g.cfg.Defaults)
		if err != nil {
			conflicts = append(conflicts, fmt.Sprintf("service %s: %v", name, err))
			continue
		}
		for _, r := range routes {
			key := strings.ToLower(r.Host) + strings.TrimSuffix(r.PathPrefix, "/")
			if key == strings.ToLower(r.Host) {
				key += "/"
			}
			if owner, ok := taken[key]; ok {
				conflicts = append(conflicts, fmt.Sprintf("service %s: host %q path %q already routed by %s; tag route ignored",
					name, r.Host, r.PathPrefix, owner))
				continue
			}
			taken[key] = "service " + name + " (tags)"
			want[name] = append(want[name], r)
		}
	}
	if !slices.Equal(conflicts, g.conflicts) {
		for _, c := range conflicts {
			g.log.Warn("route conflict", "conflict", c)
		}
	}
	g.conflicts = conflicts
	g.metrics.tagConflicts.Set(float64(len(conflicts)))

	// Drop routes of services that left or changed; add the new ones.
	for name, old := range g.tagRoutes {
		if sameRoutes(old, want[name]) {
			delete(want, name)
			continue
		}
		for _, rt := range old {
			if rt.service.removeRoute(rt) && !g.isFileService(name) {
				rt.service.stop()
				delete(g.services, name)
			}
		}
		delete(g.tagRoutes, name)
		g.log.Info("tag routes removed", "service", name)
	}
	for name, routes := range want {
		svc, existed := g.services[name]
		if !existed {
			svc = g.serviceFor(name, routes[0].RouteSettings)
		}
		for _, rc := range routes {
			rt := newRoute(rc, svc)
			svc.addRoute(rt)
			g.tagRoutes[name] = append(g.tagRoutes[name], rt)
			g.log.Info("tag route added", "service", name, "host", rc.Host, "path_prefix", rc.PathPrefix)
		}
		if !existed && g.runCtx != nil {
			svc.start(g.runCtx)
		}
	}
	all := slices.Clone(g.fileRoutes)
	for _, name := range slices.Sorted(maps.Keys(g.tagRoutes)) {
		all = append(all, g.tagRoutes[name]...)
	}
	g.table.Store(newTable(all))
}

func (g *Gateway) isFileService(name string) bool {
	for _, rt := range g.fileRoutes {
		if rt.service.name == name {
			return true
		}
	}
	return false
}

// sameRoutes reports whether running routes match wanted configs.
func sameRoutes(have []*route, want []Route) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		a, b := have[i].cfg, want[i]
		if a.Host != b.Host || a.PathPrefix != b.PathPrefix || a.StripPrefix != b.StripPrefix ||
			!slices.Equal(a.Policy, b.Policy) || *a.Sticky.Enabled != *b.Sticky.Enabled {
			return false
		}
	}
	return true
}
