package session

import (
	"context"
	"time"
)

// The affinity decision: what a request's session needs before it is
// forwarded (Decide, pure; Resolve asks the store and decides), and what
// is written once a backend answered (Commit).

// Kind says what happened to a request's session; it is logged and counted.
type Kind uint8

const (
	KindNone     Kind = iota // route not sticky, or no key (learn mode before the application's cookie)
	KindNew                  // no valid cookie, or an expired session: a new pin
	KindSticky               // reached its pinned backend
	KindRestored             // pin lost by the store (or store down): kept by the cookie's hint
	KindRepinned             // pinned backend unusable: moved to a new one
	KindDetoured             // pinned backend recovering and busy with its probes: served elsewhere once, pin kept
)

// String names the decision (the access log, traces).
func (k Kind) String() string {
	switch k {
	case KindNew:
		return "new"
	case KindSticky:
		return "sticky"
	case KindRestored:
		return "restored"
	case KindRepinned:
		return "repinned"
	case KindDetoured:
		return "detoured"
	}
	return "none"
}

// Backends is the current backend set as the session layer sees it. The
// gateway's route state implements it; its methods must not block.
type Backends interface {
	// Usable reports whether backend id may keep its sessions.
	Usable(id string) bool
	// Recovering reports whether backend id keeps its sessions while it
	// takes only the few requests (probes) that show whether it recovered,
	// turning the others away (a half-open breaker).
	Recovering(id string) bool
	// ByHint returns the backend a cookie hint names in the current set.
	ByHint(h Hint) (id string, ok bool)
	// HintOf returns backend id's cookie hint, HintFor(service, id),
	// precomputed for the backends of the set; 0 for an id not in it.
	HintOf(id string) Hint
}

// Request is what the gateway knows of a request's session.
type Request struct {
	Service string
	TTL     time.Duration // the session's sliding lifetime
	// Cookie is latch's cookie value ("" when absent).
	Cookie string
	// Learn keys the session on the application's own cookie, whose value
	// is AppValue ("" until the application set it).
	Learn    bool
	AppValue string
	// FromHeader keys the session on a request header's value, AppValue
	// ("": no session), as learn mode keys it on the application's cookie
	// (no hint, no cookie set), and pins it once answered as latch's own
	// sessions are: gRPC clients, and APIs whose clients keep no cookies,
	// send their session key in a header from the first request on.
	FromHeader bool
}

// Input is everything Decide looks at.
type Input struct {
	Request
	// The cookie, decoded: Valid is false when there was none, or it was
	// malformed, forged or oversized.
	Cookie Cookie
	Valid  bool
	// The store's (or cache's) answer about the session.
	Stored   string
	Found    bool
	StoreErr error
	// Unpinned: the session was unpinned (admin API); it starts anew.
	Unpinned bool
	Now      time.Time
	NewID    func() ID // a fresh session id (NewID)
}

// Decision is what to do with a request's session.
type Decision struct {
	Kind  Kind
	ID    ID
	HasID bool
	// Backend is the backend to send the request to ("": let the policy pick).
	Backend string
	// Pinned is the backend the session was pinned to before this request
	// ("": none); a pick elsewhere re-pins it.
	Pinned string
	// Store: pin the answering backend once it answered; Fresh: the id was
	// made by this request (no other replica can race on it).
	Store, Fresh bool
	// SetCookie: (re)issue latch's cookie with the response.
	SetCookie bool
	// Expired: the cookie outlived the session (counted).
	Expired bool
	// Resigned: the cookie was signed with an old secret and SetCookie
	// reissues it under the first (counted).
	Resigned bool
	learn    bool
	hint     Hint // the cookie's hint naming a backend of this set (0: none)
	// others: the cookie's other hints (other routes sharing the cookie),
	// carried along when it is reissued.
	others [MaxOtherHints]Hint
}

// ownHint finds the route's hint among the cookie's (most recent first):
// the first naming a backend of bs. The others are kept for the routes of
// other services that share the cookie, the least recent dropped when
// there are too many.
func ownHint(c *Cookie, bs Backends) (own Hint, others [MaxOtherHints]Hint) {
	n := 0
	for i := -1; i < MaxOtherHints; i++ {
		h := c.Hint
		if i >= 0 {
			h = c.Others[i]
		}
		if h == 0 {
			continue
		}
		if own == 0 {
			if _, ok := bs.ByHint(h); ok {
				own = h
				continue
			}
		}
		if n < MaxOtherHints {
			others[n] = h
			n++
		}
	}
	return own, others
}

// Decide is the affinity rule, a pure function of its input:
//
//   - no valid cookie, or an unpinned session: a new session (a new id,
//     pinned once answered);
//   - a pin the store knows: keep it while usable;
//   - no pin (the store lost it, or is down) but the cookie is younger than
//     the TTL: its signed hint names the backend, restored while usable;
//   - no pin and an older cookie (the store up): the session expired, a new
//     id;
//   - a kept session's cookie is reissued when its hint is not the
//     backend's (another replica re-pinned it) or it is older than TTL/4;
//   - otherwise the policy picks: a re-pin when the session had a backend,
//     a new pin when not.
func Decide(in Input, bs Backends) Decision {
	var d Decision
	var issued int64
	if in.Learn || in.FromHeader {
		if in.AppValue == "" {
			return d // the application has not issued its session yet, or no header
		}
		d.learn, d.ID, d.HasID = true, IDFromValue(in.AppValue), true
	} else {
		if !in.Valid || in.Unpinned {
			d.Kind, d.ID, d.HasID, d.Store, d.SetCookie, d.Fresh = KindNew, in.NewID(), true, true, true, true
			return d
		}
		d.ID, d.HasID, issued = in.Cookie.ID, true, int64(in.Cookie.Issued)
		d.hint, d.others = ownHint(&in.Cookie, bs)
	}
	age := in.Now.Unix() - issued
	candidate := ""
	switch {
	case in.Found:
		d.Pinned, candidate = in.Stored, in.Stored
	case !d.learn && in.Cookie.Hint != 0 && age < int64(in.TTL/time.Second):
		if id, ok := bs.ByHint(d.hint); ok {
			d.Pinned, candidate, d.Store = id, id, true
		}
	case in.StoreErr == nil && !d.learn:
		d.Expired, d.ID, d.Fresh = true, in.NewID(), true
	}
	if candidate != "" && bs.Usable(candidate) {
		d.Backend = candidate
		d.Kind = KindSticky
		if d.Store {
			d.Kind = KindRestored
		}
		// The cookie is reissued when its hint does not name the backend
		// (asked of the set's precomputed hints, not HintFor's SHA-256 per
		// request) or a quarter of the TTL has passed.
		if hinted, ok := bs.ByHint(d.hint); !d.learn && (!ok || hinted != candidate || age > int64(in.TTL/4/time.Second)) {
			d.SetCookie = true
		}
		if !d.learn && in.Cookie.OldSecret {
			// Issue 23: kept under the old secret forever, a browser-session
			// cookie never moved over, and dropping the old secret later
			// started all of them anew.
			d.SetCookie, d.Resigned = true, true
		}
		return d
	}
	d.Store = false
	if d.Pinned != "" {
		d.Kind = KindRepinned
	} else {
		d.Kind, d.Store = KindNew, true // expired or never stored
	}
	d.SetCookie = !d.learn
	return d
}

// Resolve decides a request's session: it decodes the cookie, asks the
// cache or the store where the session is pinned and applies Decide. A
// kept session's TTL is slid (in the background).
func (a *Affinity) Resolve(ctx context.Context, req Request, bs Backends) Decision {
	in := Input{Request: req, Now: a.opts.Now(), NewID: NewID}
	var id ID
	switch {
	case req.Learn || req.FromHeader:
		if req.AppValue == "" {
			return Decision{}
		}
		id = IDFromValue(req.AppValue)
	default:
		if in.Cookie, in.Valid = a.Codec().Decode(req.Cookie); !in.Valid {
			return Decide(in, bs) // a new session: nothing to look up
		}
		id = in.Cookie.ID
	}
	in.Stored, in.Found, in.StoreErr = a.Lookup(ctx, req.Service, id)
	if in.StoreErr == ErrUnpinned {
		in.StoreErr, in.Unpinned = nil, true
	}
	d := Decide(in, bs)
	if d.Expired {
		a.opts.Metrics.Expired()
	}
	if d.Resigned {
		a.opts.Metrics.Resigned()
	}
	if d.Kind == KindSticky {
		a.Touch(req.Service, d.ID, req.TTL)
	}
	return d
}

// Picked is called when the policy chose backend b for a session that d
// did not keep, or whose kept backend did not take the request. It never
// blocks and does no I/O (a picker's Pick calls it): it reports whether
// the session must be re-pinned to b before the request goes out (Repick
// does that, outside the forwarding loop). A session kept on a backend
// that is recovering (bs.Recovering) is detoured instead: b serves this
// request and the pin stays.
func (d *Decision) Picked(bs Backends, b string) (repin bool) {
	if !d.HasID || d.Pinned == "" || d.Pinned == b {
		return false
	}
	if d.Kind == KindDetoured || (d.Kind == KindSticky || d.Kind == KindRestored) && bs.Recovering(d.Pinned) {
		// Issue 22: a half-open breaker lets one probe through and turns
		// the backend's other requests away until it answered. Re-pinning
		// those sessions moved every one of them off the backend just as
		// it recovered; kept, they are back once the breaker closes (and
		// re-pinned by their next request if the probe reopens it).
		d.Kind = KindDetoured
		return false
	}
	return true
}

// Declined is called when backend b, the session's kept backend,
// answered the request with a status the route retries on
// (retry.on_status), and the policy is about to pick another. A session
// keyed on a header is detoured: the other backend serves this request
// and the pin stays (Picked then asks for no re-pin). Issue 27: re-pinned
// as a cookie session is, it could be moved by anyone who knew the
// header's value (a bearer token, a user id) by provoking such answers;
// latch's cookie is a random signed id only its holder has, and a cookie
// session still moves with the answer.
func (d *Decision) Declined(req Request, b string) {
	if req.FromHeader && d.HasID && d.Pinned == b && (d.Kind == KindSticky || d.Kind == KindRestored) {
		d.Kind = KindDetoured
	}
}

// Repick re-pins d's session to b, the policy's pick, after Picked said
// so: with compare-and-swap, so two replicas racing on one session agree
// on the winner, which is returned (b, or the other replica's choice; the
// caller sends the request there when it can). It may block, bounded by
// the store's settle timeout: call it between forwarding passes, never
// from a picker's Pick.
func (a *Affinity) Repick(ctx context.Context, req Request, d *Decision, b string) string {
	winner, err := a.Repin(ctx, req.Service, d.ID, d.Pinned, b, req.TTL)
	d.Kind, d.SetCookie, d.Store = KindRepinned, !d.learn, false
	if err == ErrUnpinned && !d.learn {
		// Unpinned meanwhile: b starts a new session.
		d.Kind, d.ID, d.Pinned, d.Store, d.Fresh = KindNew, NewID(), "", true, true
		return b
	}
	if err != nil {
		// The store did not answer: the pick serves this request and is
		// replayed (as a compare-and-swap) when the store is back.
		d.Pinned = b
		return b
	}
	d.Pinned = winner
	return winner
}

// Commit runs once backend b answered, before the response head goes out:
// it stores a new pin (or, in learn mode, the pin of the application's
// session named by appSetCookie, the value its response sets) and returns
// latch's cookie to set, if any (Codec.AppendEncode renders it).
func (a *Affinity) Commit(ctx context.Context, req Request, d *Decision, bs Backends, b, appSetCookie string) (Cookie, bool) {
	if req.Learn {
		if appSetCookie != "" {
			if id := IDFromValue(appSetCookie); !d.HasID || id != d.ID {
				_, _ = a.Pin(ctx, req.Service, id, b, req.TTL)
				d.Kind = KindNew
			}
		}
		return Cookie{}, false
	}
	if !d.HasID {
		return Cookie{}, false
	}
	// The session's backend from now on: b, unless b served a detour.
	want := b
	if d.Kind == KindDetoured {
		want = d.Pinned
	}
	pinned := want
	switch {
	case d.Store && d.Fresh:
		// An id made by this request: nobody else has it, nothing to wait for.
		a.PinNew(ctx, req.Service, d.ID, want, req.TTL)
	case d.Store:
		if got, err := a.Pin(ctx, req.Service, d.ID, want, req.TTL); err == nil && got != "" {
			pinned = got
		}
	}
	if req.FromHeader {
		return Cookie{}, false // the client names its session itself
	}
	if !d.SetCookie && pinned == want {
		return Cookie{}, false
	}
	hint := bs.HintOf(pinned)
	if hint == 0 { // pinned by another replica to a backend this one does not see
		hint = HintFor(req.Service, pinned)
	}
	c := Cookie{ID: d.ID, Hint: hint, Issued: uint32(a.opts.Now().Unix())}
	n := 0
	for _, h := range d.others {
		if h != 0 && h != hint {
			c.Others[n] = h
			n++
		}
	}
	return c, true
}
