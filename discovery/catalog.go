package discovery

import (
	"context"
	"maps"
	"slices"

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

// Watch calls update with service name → sorted, deduplicated tags, first
// as soon as known and then on every change, from one goroutine, until ctx
// ends. While Consul is unreachable nothing is published: the last map
// stands.
func (c *Catalog) Watch(ctx context.Context, update func(map[string][]string)) error {
	var last map[string][]string
	return blockingLoop(ctx, c.opts, "catalog",
		func(ctx context.Context, idx uint64) (uint64, error) {
			q := (&api.QueryOptions{WaitIndex: idx, WaitTime: c.opts.WaitTime}).WithContext(ctx)
			services, meta, err := c.client.Catalog().Services(q)
			if err != nil {
				return 0, err
			}
			for name, tags := range services {
				slices.Sort(tags)
				services[name] = slices.Compact(tags)
			}
			if last == nil || !maps.EqualFunc(last, services, slices.Equal) {
				last = services
				update(services)
			}
			return meta.LastIndex, nil
		}, func() {})
}
