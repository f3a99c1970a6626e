package policy

import (
	"time"
)

// newLeastSessions builds least_sessions, which balances what sticky sessions weigh: the live sessions
// pinned to each backend, counted across every replica, rather than the
// requests of the moment. A user pinned for half an hour is load that
// round robin, p2c and least connections never see; a backend added under
// load would otherwise idle for a session lifetime while the old ones keep
// theirs.
//
// The counts cost the request path nothing. A background refresh (the
// gateway's, at most once a second per replica: policy does no I/O) reads
// each backend's live sessions from the shared store and applies them with
// SessionCount; between refreshes a backend's figure is that count plus
// the new sessions this replica gave it since the refresh began
// (Backend.SessionStarted). When the store cannot be read the last count
// stays and this replica's own new sessions keep adding to it: the policy
// works on what the replica knows.
//
// It is the power of two choices over those figures (the p2c draw, with
// load = live sessions per unit of weight), not the backend with the
// fewest nor a draw in proportion to each backend's deficit under its
// share. Replicas work from counts up to a second old and each sees only
// its own new sessions, so both of those send every replica's new
// sessions to the same backend until the next refresh: in
// TestLeastSessionsScaleOut (three replicas, 300 new sessions a second, a
// 4th backend joining three that hold 300 each) both sent the first 303
// in a row to the new backend, and after one backend's sessions all ended
// they overshot it (426 against 358). The pair draw gives the emptiest
// backend its chance of being drawn (half the new sessions among four
// backends) until it catches up: 514 against 526-531 after 1,200 new
// sessions, with 17 in a row at most.
//
// With slow_start the chain ramps a new backend's share on top of this
// draw. Existing sessions never move: only new sessions are placed.
func newLeastSessions(set *Set, opts BuildOptions) Picker {
	return newPair(set, opts, sessions)
}

// sessions is least_sessions' load: the backend's live sessions as this
// replica knows them.
func sessions(st *state) int64 { return st.counted.Load() + st.local.Load() }

// SessionStarted counts a new session on b (a new pin, or a session
// re-pinned to b) until the next count applied includes it. One atomic add:
// the gateway calls it on the request path.
func (b *Backend) SessionStarted() { b.st.local.Add(1) }

// Sessions is b's live sessions as this replica knows them: the last count
// across every replica plus this replica's new sessions since.
func (b *Backend) Sessions() int64 { return sessions(b.st) }

// Share is b's target share of s's live sessions: its weight over the
// weights of the backends that may take new sessions now (0 when b may
// not). O(n).
func (s *Set) Share(b *Backend) float64 {
	if !b.CanTake() {
		return 0
	}
	var total int64
	for _, o := range s.Backends {
		if o.CanTake() {
			total += o.weight()
		}
	}
	return float64(b.weight()) / float64(total)
}

// SessionCount is one refresh of the live-session counts of a registry's
// backends. BeginSessionCount records which backends to count and how many
// new sessions this replica had given each; Apply stores the counts read
// and keeps, of this replica's new sessions, only those started since
// Begin: the earlier ones are in the store's count (or, if their client
// never came back to have its pin stored, are no load).
type SessionCount struct {
	IDs    []string // the backends to count
	reg    *Registry
	states []*state
	marks  []int64
}

// BeginSessionCount starts a refresh over the current Set's backends (none
// before the first Update). Safe for concurrent use; refreshes should not
// overlap.
func (r *Registry) BeginSessionCount() *SessionCount {
	c := &SessionCount{reg: r}
	set := r.Current()
	if set == nil {
		return c
	}
	for _, b := range set.Backends {
		c.IDs = append(c.IDs, b.ID)
		c.states = append(c.states, b.st)
		c.marks = append(c.marks, b.st.local.Load())
	}
	return c
}

// Apply stores counts (live sessions by backend ID across every replica;
// a missing ID counts 0), read at time at.
func (c *SessionCount) Apply(counts map[string]int64, at time.Time) {
	for i, st := range c.states {
		st.counted.Store(counts[c.IDs[i]])
		st.local.Add(-c.marks[i])
	}
	c.reg.countedAt.Store(at.UnixNano())
}

// SessionsCountedAt is when the last session count was applied (the zero
// Time before the first): its age is the staleness of least_sessions.
func (r *Registry) SessionsCountedAt() time.Time {
	ns := r.countedAt.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
