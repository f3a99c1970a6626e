package discovery

import (
	"context"
	"maps"
	"slices"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// Catalog watches the list of Consul services and their tags, for routes
// declared by tags (latch.route=/api). Safe for concurrent use.
type Catalog struct {
	client *api.Client
	opts   ConsulOptions
}

// NewCatalog returns a catalog watcher reading from client.
func NewCatalog(client *api.Client, opts ConsulOptions) *Catalog {
	opts.defaults()
	return &Catalog{client: client, opts: opts}
}

// consulService is the name Consul servers register themselves under: it
// stays in the catalog of an agent that lost every other registration.
const consulService = "consul"

// Watch calls update with service name → sorted, deduplicated tags, first
// as soon as known and then on every change, from one goroutine, until ctx
// ends. While Consul is unreachable nothing is published: the last map
// stands. An answer in which every service of the last map but "consul" is
// gone is held back for EmptyGrace, as Consul.Watch holds an empty service:
// nothing is published until every service of the last map is back or the
// grace has passed.
// With a Tag, only services with an instance carrying it are listed.
func (c *Catalog) Watch(ctx context.Context, update func(map[string][]string)) error {
	var last map[string][]string
	hold := emptyHold{grace: c.opts.EmptyGrace}
	return blockingLoop(ctx, c.opts, "catalog",
		func(ctx context.Context, idx uint64) (uint64, error) {
			held, left := hold.holding(c.opts.Now())
			q := c.opts.query(ctx, idx, held, left)
			if c.opts.Tag != "" {
				q.Filter = strconv.Quote(c.opts.Tag) + " in ServiceTags"
			}
			services, meta, err := c.client.Catalog().Services(q)
			if err != nil {
				return 0, err
			}
			for name, tags := range services {
				slices.Sort(tags)
				services[name] = slices.Compact(tags)
			}
			keep, ev := hold.check(emptied(last, services, held), c.opts.Now())
			c.opts.logHold("catalog", ev, func() int { return len(last) })
			if keep {
				return meta.LastIndex, nil
			}
			if last == nil || !maps.EqualFunc(last, services, slices.Equal) {
				last = services
				update(services)
			}
			return meta.LastIndex, nil
		}, func() {})
}

// emptied reports whether next lacks every service of last but Consul's own
// while last had some; or, while holding, any of them (they register
// again one by one: the hold lasts until all are back or the grace ends).
func emptied(last, next map[string][]string, holding bool) bool {
	had, missing := 0, 0
	for name := range last {
		if name == consulService {
			continue
		}
		had++
		if _, ok := next[name]; !ok {
			missing++
		}
	}
	if holding {
		return missing > 0
	}
	return had > 0 && missing == had
}
