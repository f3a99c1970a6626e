package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Consul tags that route a service with no change to latch's config.
const (
	tagRoute       = "latch.route="            // path prefix, e.g. latch.route=/api (one route per tag)
	tagHost        = "latch.host="             // host, e.g. latch.host=shop.example.com
	tagPolicy      = "latch.policy="           // policy chain, e.g. latch.policy=least_response_time,round_robin
	tagSticky      = "latch.sticky="           // true (default) or false
	tagStripPrefix = "latch.strip_prefix="     // true or false (default)
	tagBackendTLS  = "latch.backend_tls="      // true: the instances speak TLS (roots: defaults.backend_tls.ca_file)
	tagProtocol    = "latch.backend_protocol=" // h1, h2c or h2 (h2 with latch.backend_tls=true)
)

// RoutesFromTags turns one service's Consul tags into compiled routes under
// c's defaults. It returns no routes and no error for a service without
// latch.route or latch.host tags; bad values fail with the tag named.
func (c *Compiled) RoutesFromTags(service string, tags []string) ([]*Spec, error) {
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
			base.Policy = Set(SplitList(strings.TrimPrefix(t, tagPolicy)))
		case strings.HasPrefix(t, tagSticky):
			b, err := strconv.ParseBool(strings.TrimPrefix(t, tagSticky))
			if err != nil {
				return nil, fmt.Errorf("tag %q: not true or false", t)
			}
			base.Sticky.Enabled = Set(b)
		case strings.HasPrefix(t, tagStripPrefix):
			b, err := strconv.ParseBool(strings.TrimPrefix(t, tagStripPrefix))
			if err != nil {
				return nil, fmt.Errorf("tag %q: not true or false", t)
			}
			base.StripPrefix = b
		case strings.HasPrefix(t, tagBackendTLS):
			b, err := strconv.ParseBool(strings.TrimPrefix(t, tagBackendTLS))
			if err != nil {
				return nil, fmt.Errorf("tag %q: not true or false", t)
			}
			base.BackendTLS.Enabled = Set(b)
		case strings.HasPrefix(t, tagProtocol):
			base.BackendProtocol = Set(strings.TrimPrefix(t, tagProtocol))
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
	var out []*Spec
	for _, pfx := range prefixes {
		r := base
		r.Host, r.PathPrefix = host, pfx
		r = r.withDefaults(c.cfg.Defaults)
		var p problems
		r.validate(&p, "tags of service "+service, false)
		if len(p.errs) > 0 {
			return nil, p.errs[0]
		}
		out = append(out, c.newSpec(r, true))
	}
	return out, nil
}
