package discovery

import "time"

// emptyHold is the rule for an answer that suddenly removes everything a
// watch had (every backend of a service, every service of the catalog):
// typical of an agent that lost its state (a -dev agent restarted, a new
// node) and answers before the services registered again. Such an answer
// is held back for a grace period while the last good state keeps serving,
// marked stale; an answer that brings anything back ends the hold, and one
// still empty when the grace has passed is applied.
//
// It is a pure state machine over the time it is given: not safe for
// concurrent use (each watch owns one).
type emptyHold struct {
	grace time.Duration // ≤ 0: never hold
	since time.Time     // zero while not holding
}

// holdEvent says what an answer did to the hold, for the caller's log.
type holdEvent uint8

const (
	holdNone    holdEvent = iota
	holdStarted           // an emptying answer: the last good state stays
	holdExpired           // the grace passed: the empty answer is applied
	holdEnded             // an answer brought things back within the grace
)

// check takes an answer that would (emptied) or would not empty the watch's
// state, at now, and reports whether to keep serving the last good state.
func (h *emptyHold) check(emptied bool, now time.Time) (hold bool, ev holdEvent) {
	switch {
	case !emptied && h.since.IsZero():
		return false, holdNone
	case !emptied:
		h.since = time.Time{}
		return false, holdEnded
	case h.grace <= 0:
		return false, holdNone
	case h.since.IsZero():
		h.since = now
		return true, holdStarted
	case now.Sub(h.since) < h.grace:
		return true, holdNone
	default:
		h.since = time.Time{}
		return false, holdExpired
	}
}

// holding reports whether an answer is being held back, and for how much
// longer at most.
func (h *emptyHold) holding(now time.Time) (bool, time.Duration) {
	if h.since.IsZero() {
		return false, 0
	}
	return true, max(h.grace-now.Sub(h.since), 0)
}
