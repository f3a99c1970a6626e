package forward

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// limiter lets one log record of a kind through per interval and counts
// the ones it held back, reported with the next: during an outage every
// request fails the same way, and one line a second says so as well as a
// line per request, without flooding the log.
type limiter struct {
	next       atomic.Int64 // unix nanos before which records are held back
	suppressed atomic.Int64
}

const logEvery = time.Second

// allow reports whether a record may be logged now, and how many were held
// back since the last one.
func (l *limiter) allow(now time.Time) (ok bool, suppressed int64) {
	n := l.next.Load()
	if now.UnixNano() < n || !l.next.CompareAndSwap(n, now.Add(logEvery).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

// warn logs a failed request at most once per second per kind (lim).
func (f *Forwarder) warn(lim *limiter, msg string, x *exchange, code int, err error) {
	ok, held := lim.allow(time.Now())
	if !ok {
		return
	}
	id := ""
	if x.backend != nil {
		id = x.backend.ID
	}
	attrs := []any{"route", x.spec.Name(), "backend", id, "status", code, "err", err}
	if held > 0 {
		attrs = append(attrs, "suppressed", held)
	}
	f.log.Log(context.Background(), slog.LevelWarn, msg, attrs...)
}
