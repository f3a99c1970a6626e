package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul's read modes (ConsulOptions.Consistency).
const (
	// ReadStale lets any server answer from its own copy: reads stay off the
	// leader and keep working while the cluster has no leader.
	ReadStale = "stale"
	// ReadDefault asks the leader, which answers from memory.
	ReadDefault = "default"
	// ReadConsistent makes the leader confirm its leadership with a quorum
	// before each answer.
	ReadConsistent = "consistent"
)

// ConsulOptions tune the blocking-query loops. The zero value is usable.
type ConsulOptions struct {
	// WaitTime is how long one blocking query may wait (default 5m; Consul
	// caps it at 10m and adds up to WaitTime/16 of jitter).
	WaitTime time.Duration
	// StaleWait bounds a blocking query while the published state is stale
	// (the agent knows no leader, or an empty answer is held back; default
	// 2s). Consul's index need not move when a leader is elected again, so
	// a long query would keep the stale flag up until some unrelated change.
	StaleWait time.Duration
	// LeaderCheck is how often the agent is asked whether its servers have
	// a leader (default 5s; StaleWait while they have none).
	LeaderCheck time.Duration
	// ProbeTimeout bounds that question (default 3s). An agent that does
	// not answer it in time is taken as unreachable: the query in flight
	// is ended and the state marked stale. A partition that drops packets
	// refuses nothing, and a blocking query would otherwise wait on its
	// silent connection for the whole WaitTime.
	ProbeTimeout time.Duration
	// ReconnectSettle is how long after an outage an answer may not lower
	// a backend's health nor remove it (default 3s; negative: no window):
	// such changes are applied when the window ends, if they still hold.
	// An agent that restarts flips its checks to critical one by one, a
	// second or two after it answers again; applying each step would move
	// the sessions of the first backends to go critical before the panic
	// threshold sees that all of them did. Additions, recoveries and the
	// stale flag are applied at once.
	ReconnectSettle time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed queries
	// (defaults 250ms and 5s), with full jitter: a gateway should notice
	// Consul's return within seconds, and 5s still keeps a dead agent quiet.
	MinBackoff, MaxBackoff time.Duration
	// EmptyGrace is how long an answer that removes every backend of a
	// service (or every service from the catalog) is held back while the
	// last good state serves, marked stale (default 30s; negative: apply
	// such answers at once). See emptyHold.
	EmptyGrace time.Duration
	// Tag, when set, keeps only instances carrying it.
	Tag string
	// Consistency is the read mode: ReadStale (default), ReadDefault or
	// ReadConsistent.
	Consistency string
	// Logger gets one line per outage and recovery (default slog.Default()).
	Logger *slog.Logger
	// Rand returns numbers in [0,1) for the jitter (default math/rand/v2).
	Rand func() float64
	// Now is the clock of the empty-answer grace (default time.Now).
	Now func() time.Time
}

func (o *ConsulOptions) defaults() {
	if o.WaitTime <= 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.StaleWait <= 0 {
		o.StaleWait = 2 * time.Second
	}
	if o.ReconnectSettle == 0 {
		o.ReconnectSettle = 3 * time.Second
	}
	if o.LeaderCheck <= 0 {
		o.LeaderCheck = 5 * time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 3 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 5 * time.Second
	}
	if o.EmptyGrace == 0 {
		o.EmptyGrace = 30 * time.Second
	}
	if o.Consistency == "" {
		o.Consistency = ReadStale
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ValidConsistency reports whether mode is a read mode ConsulOptions takes
// ("" is the default, stale).
func ValidConsistency(mode string) error {
	switch mode {
	case "", ReadStale, ReadDefault, ReadConsistent:
		return nil
	}
	return fmt.Errorf("%q is not stale, default or consistent", mode)
}

// query builds the options of one blocking query. While stale the wait is
// short, and never beyond bound when that is set (the end of an empty
// answer's grace or of the settle window after an outage).
func (o *ConsulOptions) query(ctx context.Context, idx uint64, stale bool, bound time.Duration) *api.QueryOptions {
	wait := o.WaitTime
	if stale {
		wait = o.StaleWait
	}
	if bound > 0 {
		// Never 0: no wait parameter means Consul's default of 5 minutes.
		wait = min(wait, max(bound, 50*time.Millisecond))
	}
	q := &api.QueryOptions{WaitIndex: idx, WaitTime: wait,
		AllowStale: o.Consistency == ReadStale, RequireConsistent: o.Consistency == ReadConsistent}
	return q.WithContext(ctx)
}

// Consul is a Source that watches /v1/health/service/<name> with blocking
// queries. Safe for concurrent use: each Watch runs its own loop.
type Consul struct {
	client *api.Client
	opts   ConsulOptions
}

var _ Source = (*Consul)(nil)

// NewConsul returns a Source reading from client.
func NewConsul(client *api.Client, opts ConsulOptions) *Consul {
	opts.defaults()
	return &Consul{client: client, opts: opts}
}

// Watch implements Source. While Consul is unreachable, or answers from a
// server that knows no leader, the last snapshot is published with Stale
// set, and queries retry with backoff (or wait briefly); the first good
// answer clears Stale. An answer that removes every backend is held back
// for EmptyGrace, serving the last good backends with Stale and Held set;
// answers during the hold serve what they list plus the held backends
// still missing, until all of these are back (the hold ends) or the grace
// has passed (the answer is applied as it is).
func (c *Consul) Watch(ctx context.Context, service string, update func(Snapshot)) error {
	if service == "" {
		return errors.New("discovery: empty service name")
	}
	var last, good *Snapshot // last published; last answer applied
	hold := emptyHold{grace: c.opts.EmptyGrace}
	var probe leaderProbe
	var wg sync.WaitGroup
	defer wg.Wait() // the loop returns only once ctx ended, which ends the probe
	wg.Go(func() { probe.run(ctx, c.client, &c.opts) })
	var settleUntil time.Time // until then, answers do not lower health nor remove backends
	reconnected := false
	var acl aclFilter
	publish := func(s Snapshot) {
		if last != nil && last.Equal(s) {
			last.Index = s.Index
			return
		}
		last = &s
		update(s)
	}
	answer := func(s Snapshot) {
		if last != nil && c.opts.Now().Before(settleUntil) {
			s = settled(*last, s) // the query after this one ends with the window
		}
		publish(s)
	}
	what := "service " + service
	return blockingLoop(ctx, c.opts, what,
		func(ctx context.Context, idx uint64) (uint64, error) {
			_, left := hold.holding(c.opts.Now())
			if settle := settleUntil.Sub(c.opts.Now()); settle > 0 && (left == 0 || settle < left) {
				left = settle
			}
			qctx, done := probe.query(ctx)
			defer done()
			q := c.opts.query(qctx, idx, last != nil && last.Stale, left)
			entries, meta, err := c.client.Health().Service(service, c.opts.Tag, false, q)
			if err != nil {
				return 0, probe.failed(ctx, qctx, err)
			}
			// Only a query without an index says whether there is a leader;
			// the leader probe asks for one when the leader comes or goes.
			if idx == 0 {
				probe.noteLeader(&c.opts, what, meta.KnownLeader)
			}
			acl.note(c.opts.Logger, what, meta.ResultsFilteredByACLs)
			if reconnected {
				reconnected = false
				settleUntil = c.opts.Now().Add(c.opts.ReconnectSettle)
			}
			s := Snapshot{Service: service, Index: meta.LastIndex, Backends: make([]Backend, 0, len(entries)), Stale: probe.leaderless.Load()}
			for _, e := range entries {
				if e.Service == nil {
					continue
				}
				s.Backends = append(s.Backends, FromEntry(e))
			}
			sortBackends(s.Backends)
			// While holding, the hold lasts until every held backend is back
			// (they register again one by one) or the grace ends.
			var missing []Backend
			if good != nil {
				missing = absent(good.Backends, s.Backends)
			}
			holding, _ := hold.holding(c.opts.Now())
			emptied := len(missing) > 0 && (holding || len(s.Backends) == 0)
			held, ev := hold.check(emptied, c.opts.Now())
			c.opts.logHold(what, ev, func() int { return len(good.Backends) })
			if held {
				h := s
				h.Backends = append(slices.Clone(s.Backends), missing...)
				sortBackends(h.Backends)
				h.Stale, h.Held = true, true
				answer(h)
				return meta.LastIndex, nil
			}
			good = &s
			answer(s)
			return meta.LastIndex, nil
		},
		func() {
			reconnected = true
			if last != nil && !last.Stale {
				stale := *last
				stale.Stale = true
				publish(stale)
			}
		})
}

func (o *ConsulOptions) logHold(what string, ev holdEvent, had func() int) {
	switch ev {
	case holdStarted:
		o.Logger.Warn("consul answered with nothing where there was something (an agent that lost its state?): "+
			"keeping the last good state, marked stale, until the answer changes or the grace ends",
			"watch", what, "kept", had(), "grace", o.EmptyGrace.String())
	case holdExpired:
		o.Logger.Warn("consul still answers with nothing after the grace: applying the empty answer",
			"watch", what, "grace", o.EmptyGrace.String())
	case holdEnded:
		o.Logger.Info("consul answers with instances again: empty answer dropped", "watch", what)
	}
}

// settled is next with the changes of the settle window deferred: a
// backend of prev keeps its health (and weight) where next lowers it, and
// one next lacks stays.
func settled(prev, next Snapshot) Snapshot {
	out := next
	out.Backends = append(make([]Backend, 0, len(next.Backends)+len(prev.Backends)), next.Backends...)
	for i, b := range out.Backends {
		j, found := slices.BinarySearchFunc(prev.Backends, b.ID, func(x Backend, id string) int { return strings.Compare(x.ID, id) })
		if found && prev.Backends[j].Health > b.Health {
			out.Backends[i].Health, out.Backends[i].Weight = prev.Backends[j].Health, prev.Backends[j].Weight
			out.Backends[i].Unchecked = prev.Backends[j].Unchecked
		}
	}
	out.Backends = append(out.Backends, absent(prev.Backends, next.Backends)...)
	sortBackends(out.Backends)
	return out
}

// absent returns the backends of had whose ID is not in now (both sorted).
func absent(had, now []Backend) []Backend {
	var out []Backend
	for _, b := range had {
		if _, found := slices.BinarySearchFunc(now, b.ID, func(x Backend, id string) int { return strings.Compare(x.ID, id) }); !found {
			out = append(out, b)
		}
	}
	return out
}

// blockingLoop runs fetch as Consul's blocking-query protocol asks
// (https://developer.hashicorp.com/consul/api-docs/features/blocking):
// the index returned is the next WaitIndex; an index that goes backwards
// or is 0 resets to 0; errors back off with jitter and call onError; a
// query answering at once with an unchanged index is slowed down, so a
// misbehaving agent never causes a hot loop.
//
// After an error the next query does not block at all (index 0): the agent
// that answers may be a new one (a restart without state, another node)
// whose index is below ours, and a blocking query on an index it has not
// reached would hang for the whole WaitTime with the stale flag up
// (issue 12: 5 minutes).
func blockingLoop(ctx context.Context, opts ConsulOptions, what string,
	fetch func(ctx context.Context, idx uint64) (uint64, error), onError func()) error {
	bo := backoff{min: opts.MinBackoff, max: opts.MaxBackoff, rand: opts.Rand}
	var idx uint64
	failures, fast := 0, 0
	for {
		start := time.Now()
		next, err := fetch(ctx, idx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errRequery) {
			idx = 0
			continue
		}
		if err != nil {
			switch {
			case failures > 0:
			case denied(err):
				opts.Logger.Error("consul refused latch's ACL token: serving the last known state",
					"watch", what, "err", err, "fix", ACLPolicyHint)
			default:
				opts.Logger.Warn("consul unreachable: serving the last known state", "watch", what, "err", err)
			}
			onError()
			idx = 0
			d := bo.delay(failures)
			failures++
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		if failures > 0 {
			opts.Logger.Info("consul reachable again", "watch", what, "after_failures", failures)
			failures = 0
		}
		prev := idx
		if next == 0 || next < prev {
			if next < prev {
				opts.Logger.Info("consul index went backwards: starting over", "watch", what, "was", prev, "now", next)
			}
			idx = 0 // a reset (snapshot restore, new agent): start over
		} else {
			idx = next
		}
		switch blocked := time.Since(start) >= 10*time.Millisecond; {
		case blocked:
			fast = 0 // a real blocking query
		case idx == 0 || next == prev:
			// No usable index, or an instant answer with no progress: not a
			// real blocking query, so slow down (more each time) rather than
			// spin.
			fast++
			if !sleep(ctx, bo.delay(min(fast-1, 10))) {
				return ctx.Err()
			}
		}
	}
}
