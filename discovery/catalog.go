package discovery

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

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
// ends. It follows the rules of Consul.Watch, but for the stale flag (the
// catalog has none to publish):
//
//   - while Consul is unreachable nothing is published: the last map
//     stands;
//   - the leader probe ends a query waiting on a server that lost its
//     leader, got one again or stopped answering; while the servers have
//     no leader, queries wait StaleWait;
//   - for ReconnectSettle after an outage, answers may add services and
//     tags but not remove them: removals apply when the window ends, if
//     they still hold (a restarted agent lists its services again one by
//     one, and each route from a missing one would answer 404);
//   - an answer in which every service of the last map but "consul" is
//     gone is held back for EmptyGrace: nothing is published until every
//     service of the last map is back or the grace has passed.
//
// With a Tag, only services with an instance carrying it are listed.
func (c *Catalog) Watch(ctx context.Context, update func(map[string][]string)) error {
	var last map[string][]string
	hold := emptyHold{grace: c.opts.EmptyGrace}
	var probe leaderProbe
	var wg sync.WaitGroup
	defer wg.Wait() // the loop returns only once ctx ended, which ends the probe
	wg.Go(func() { probe.run(ctx, c.client, &c.opts) })
	var settleUntil time.Time // until then, answers do not remove services nor tags
	reconnected := false
	acl := aclFilter{catalog: true}
	return blockingLoop(ctx, c.opts, "catalog",
		func(ctx context.Context, idx uint64) (uint64, error) {
			held, left := hold.holding(c.opts.Now())
			if settle := settleUntil.Sub(c.opts.Now()); settle > 0 && (left == 0 || settle < left) {
				left = settle
			}
			qctx, done := probe.query(ctx)
			defer done()
			q := c.opts.query(qctx, idx, held || probe.leaderless.Load(), left)
			if c.opts.Tag != "" {
				q.Filter = strconv.Quote(c.opts.Tag) + " in ServiceTags"
			}
			services, meta, err := c.client.Catalog().Services(q)
			if err != nil {
				return 0, probe.failed(ctx, qctx, err)
			}
			if idx == 0 {
				probe.noteLeader(&c.opts, "catalog", meta.KnownLeader)
			}
			acl.note(c.opts.Logger, "catalog", meta.ResultsFilteredByACLs)
			if reconnected {
				reconnected = false
				settleUntil = c.opts.Now().Add(c.opts.ReconnectSettle)
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
			if last != nil && c.opts.Now().Before(settleUntil) {
				services = settledCatalog(last, services)
			}
			if last == nil || !maps.EqualFunc(last, services, slices.Equal) {
				last = services
				update(services)
			}
			return meta.LastIndex, nil
		}, func() { reconnected = true })
}

// settledCatalog is next with the removals of the settle window deferred:
// a service of prev that next lacks stays, and a service keeps the tags
// of prev that next lacks.
func settledCatalog(prev, next map[string][]string) map[string][]string {
	out := maps.Clone(next)
	for name, tags := range prev {
		if now, ok := out[name]; ok {
			tags = append(slices.Clone(now), tags...)
			slices.Sort(tags)
			tags = slices.Compact(tags)
		}
		out[name] = tags
	}
	return out
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
