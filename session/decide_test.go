package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

type fakeBackends struct {
	usable     map[string]bool
	recovering map[string]bool
	service    string // "" = web
}

func (f fakeBackends) svc() string {
	if f.service == "" {
		return "web"
	}
	return f.service
}

func (f fakeBackends) Usable(id string) bool { return f.usable[id] }

func (f fakeBackends) Recovering(id string) bool { return f.recovering[id] }

func (f fakeBackends) HintOf(id string) Hint {
	if _, ok := f.usable[id]; ok {
		return HintFor(f.svc(), id)
	}
	return 0
}

func (f fakeBackends) ByHint(h Hint) (string, bool) {
	for id := range f.usable {
		if HintFor(f.svc(), id) == h {
			return id, true
		}
	}
	return "", false
}

// Decide with an injected clock: TTL expiry, hint age, reissue at TTL/4,
// learn mode.
func TestDecide(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ttl := 30 * time.Minute
	old, fresh := ID{1}, ID{2}
	cookie := func(backend string, age time.Duration) Cookie {
		return Cookie{ID: old, Hint: HintFor("web", backend), Issued: uint32(now.Add(-age).Unix())}
	}
	bs := fakeBackends{usable: map[string]bool{"a": true, "b": true, "down": false}}
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"no cookie", Input{},
			Decision{Kind: KindNew, ID: fresh, HasID: true, Store: true, Fresh: true, SetCookie: true}},
		{"pinned and usable", Input{Cookie: cookie("a", time.Minute), Valid: true, Stored: "a", Found: true},
			Decision{Kind: KindSticky, ID: old, HasID: true, Backend: "a", Pinned: "a"}},
		{"signed with an old secret: reissued", Input{Cookie: signedOld(cookie("a", time.Minute)), Valid: true, Stored: "a", Found: true},
			Decision{Kind: KindSticky, ID: old, HasID: true, Backend: "a", Pinned: "a", SetCookie: true, Resigned: true}},
		{"old secret, restored from the hint: reissued", Input{Cookie: signedOld(cookie("a", time.Minute)), Valid: true},
			Decision{Kind: KindRestored, ID: old, HasID: true, Backend: "a", Pinned: "a", Store: true, SetCookie: true, Resigned: true}},
		{"cookie older than ttl/4 reissued", Input{Cookie: cookie("a", ttl/4+time.Minute), Valid: true, Stored: "a", Found: true},
			Decision{Kind: KindSticky, ID: old, HasID: true, Backend: "a", Pinned: "a", SetCookie: true}},
		{"re-pinned by another replica: hint reissued", Input{Cookie: cookie("a", time.Minute), Valid: true, Stored: "b", Found: true},
			Decision{Kind: KindSticky, ID: old, HasID: true, Backend: "b", Pinned: "b", SetCookie: true}},
		{"pinned backend unusable", Input{Cookie: cookie("down", time.Minute), Valid: true, Stored: "down", Found: true},
			Decision{Kind: KindRepinned, ID: old, HasID: true, Pinned: "down", SetCookie: true}},
		{"store lost it: young hint restores", Input{Cookie: cookie("a", time.Minute), Valid: true},
			Decision{Kind: KindRestored, ID: old, HasID: true, Backend: "a", Pinned: "a", Store: true}},
		{"store down: young hint restores", Input{Cookie: cookie("a", time.Minute), Valid: true, StoreErr: errors.New("down")},
			Decision{Kind: KindRestored, ID: old, HasID: true, Backend: "a", Pinned: "a", Store: true}},
		{"hint older than ttl: expired", Input{Cookie: cookie("a", ttl+time.Second), Valid: true},
			Decision{Kind: KindNew, ID: fresh, HasID: true, Store: true, Fresh: true, SetCookie: true, Expired: true}},
		{"old hint, store down: not expired", Input{Cookie: cookie("a", ttl+time.Second), Valid: true, StoreErr: errors.New("down")},
			Decision{Kind: KindNew, ID: old, HasID: true, Store: true, SetCookie: true}},
		{"hint of a backend gone", Input{Cookie: cookie("gone", time.Minute), Valid: true},
			Decision{Kind: KindNew, ID: old, HasID: true, Store: true, SetCookie: true}},
		{"learn: no application cookie yet", Input{Request: Request{Learn: true}}, Decision{}},
		{"learn: pinned", Input{Request: Request{Learn: true, AppValue: "J1"}, Stored: "a", Found: true},
			Decision{Kind: KindSticky, ID: IDFromValue("J1"), HasID: true, Backend: "a", Pinned: "a"}},
		{"learn: unpinned, no latch cookie", Input{Request: Request{Learn: true, AppValue: "J1"}},
			Decision{Kind: KindNew, ID: IDFromValue("J1"), HasID: true, Store: true}},
		{"header: none sent", Input{Request: Request{FromHeader: true}}, Decision{}},
		{"header: pinned", Input{Request: Request{FromHeader: true, AppValue: "s1"}, Stored: "a", Found: true},
			Decision{Kind: KindSticky, ID: IDFromValue("s1"), HasID: true, Backend: "a", Pinned: "a"}},
		{"header: first request, a latch cookie ignored", Input{Request: Request{FromHeader: true, AppValue: "s1"}, Cookie: cookie("b", time.Minute), Valid: true},
			Decision{Kind: KindNew, ID: IDFromValue("s1"), HasID: true, Store: true}},
		{"header: pinned backend unusable", Input{Request: Request{FromHeader: true, AppValue: "s1"}, Stored: "down", Found: true},
			Decision{Kind: KindRepinned, ID: IDFromValue("s1"), HasID: true, Pinned: "down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Service, in.TTL, in.Now = "web", ttl, now
			in.NewID = func() ID { return fresh }
			got := Decide(in, bs)
			got.learn, got.hint, got.others = false, 0, [MaxOtherHints]Hint{}
			if got != tt.want {
				t.Fatalf("Decide =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

// Commit's cookie carries the pinned backend's hint: the set's precomputed
// one, or HintFor for a backend the set does not hold (another replica's
// pin).
func TestCommitCookieHint(t *testing.T) {
	c := codec(t, newSecret)
	a := NewAffinity(Options{Store: NewMemoryStore(100, nil), Codec: c})
	bs := fakeBackends{usable: map[string]bool{"a": true}}
	req := Request{Service: "web", TTL: time.Minute}
	for _, b := range []string{"a", "elsewhere"} {
		d := Decision{HasID: true, ID: NewID(), SetCookie: true}
		set, issued := a.Commit(context.Background(), req, &d, bs, b, "")
		got, ok := c.Decode(c.Encode(set))
		ok = ok && issued
		if !ok || got.Hint != HintFor("web", b) || got.ID != d.ID {
			t.Errorf("cookie for %s: %+v (valid %v); want id %x, hint %x", b, got, ok, d.ID, HintFor("web", b))
		}
	}
}

// Issue 17: routes of two services share one cookie; each finds its own
// hint in it, whichever route issued it last, and a reissue keeps the
// other's.
func TestCookieHintsPerService(t *testing.T) {
	c := codec(t, newSecret)
	a := NewAffinity(Options{Store: NewMemoryStore(100, nil), Codec: c})
	now := time.Now()
	web := fakeBackends{usable: map[string]bool{"w1": true, "w2": true}, service: "web"}
	api := fakeBackends{usable: map[string]bool{"a1": true, "a2": true}, service: "api"}
	ck := Cookie{ID: NewID(), Hint: HintFor("web", "w2"), Issued: uint32(now.Unix())}
	// An /api request with /'s cookie, the store empty: a new pin, the
	// cookie reissued carrying both hints.
	in := Input{Request: Request{Service: "api", TTL: time.Hour}, Cookie: ck, Valid: true, Now: now, NewID: NewID}
	d := Decide(in, api)
	if d.Kind != KindNew || d.ID != ck.ID || !d.SetCookie {
		t.Fatalf("api with web's cookie: %+v", d)
	}
	issued, _ := a.Commit(context.Background(), in.Request, &d, api, "a1", "")
	back, ok := c.Decode(c.Encode(issued))
	if !ok || back != issued || back.Hint != HintFor("api", "a1") || back.Others[0] != HintFor("web", "w2") {
		t.Fatalf("reissued cookie %+v (ok %v); want api's hint first, then web's", back, ok)
	}
	// Both routes restore from it alone (the store lost everything).
	for _, tc := range []struct {
		bs   fakeBackends
		want string
	}{{web, "w2"}, {api, "a1"}} {
		in := Input{Request: Request{Service: tc.bs.service, TTL: time.Hour}, Cookie: back, Valid: true, Now: now, NewID: NewID}
		if d := Decide(in, tc.bs); d.Kind != KindRestored || d.Backend != tc.want || d.SetCookie {
			t.Fatalf("%s from the shared cookie: %+v; want restored to %s, cookie kept", tc.bs.service, d, tc.want)
		}
	}
	// Bounded: the least recent hint goes.
	full := Cookie{ID: ck.ID, Hint: 11, Others: [MaxOtherHints]Hint{12, 13, 14}, Issued: 1}
	if back, ok := c.Decode(c.Encode(full)); !ok || back != full {
		t.Fatalf("cookie with %d other hints: %+v %v", MaxOtherHints, back, ok)
	}
	if _, others := ownHint(&full, web); others != [MaxOtherHints]Hint{11, 12, 13} {
		t.Fatalf("others %v; want the 3 most recent", others)
	}
}

// Issue 22: a session kept on a backend that is recovering (its breaker
// half-open, the probe taken) and picked elsewhere for this request is
// detoured: the store keeps (or, restored from the hint, gets) its
// backend, and a reissued cookie names it. A backend that is not
// recovering (a failed attempt) moves the session as before, and so does
// a pick after a re-pin.
// picked is what a request's picker and its settling do with the
// policy's pick b: Picked, and Repick when it asks for a re-pin.
func picked(ctx context.Context, a *Affinity, req Request, d *Decision, bs Backends, b string) string {
	if d.Picked(bs, b) {
		return a.Repick(ctx, req, d, b)
	}
	return b
}

func TestPickedDetoursRecovering(t *testing.T) {
	now := time.Now()
	ttl := time.Hour
	tests := []struct {
		name       string
		stored     bool          // the store holds the pin (else restored from the hint)
		age        time.Duration // the cookie's
		recovering bool
		wantKind   Kind
		wantStore  string // the store's pin after Commit
		wantHint   string // the reissued cookie's backend ("": none reissued)
	}{
		{name: "sticky, recovering: detoured", stored: true, age: time.Minute, recovering: true,
			wantKind: KindDetoured, wantStore: "a"},
		{name: "sticky, recovering, old cookie: reissued for a", stored: true, age: ttl/4 + time.Minute, recovering: true,
			wantKind: KindDetoured, wantStore: "a", wantHint: "a"},
		{name: "restored, recovering: pinned to a", age: time.Minute, recovering: true,
			wantKind: KindDetoured, wantStore: "a"},
		{name: "sticky, not recovering: re-pinned", stored: true, age: time.Minute,
			wantKind: KindRepinned, wantStore: "c", wantHint: "c"},
		{name: "restored, not recovering: re-pinned", age: time.Minute,
			wantKind: KindRepinned, wantStore: "c", wantHint: "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := codec(t, newSecret)
			store := NewMemoryStore(100, nil)
			a := NewAffinity(Options{Store: store, Codec: c})
			bs := fakeBackends{usable: map[string]bool{"a": true, "b": true, "c": true}, recovering: map[string]bool{"a": tt.recovering}}
			req := Request{Service: "web", TTL: ttl}
			id := NewID()
			in := Input{Request: req, Valid: true, Now: now, NewID: NewID,
				Cookie: Cookie{ID: id, Hint: HintFor("web", "a"), Issued: uint32(now.Add(-tt.age).Unix())}}
			if tt.stored {
				if _, err := store.SetNX(ctx, storeKey("web", id), "a", ttl); err != nil {
					t.Fatal(err)
				}
				in.Stored, in.Found = "a", true
			}
			d := Decide(in, bs)
			if d.Backend != "a" {
				t.Fatalf("Decide %+v; want a kept", d)
			}
			// a turned the request away: the policy picks b, then c (b
			// failed; a re-pinned session moves on from b).
			for _, b := range []string{"b", "c"} {
				if got := picked(ctx, a, req, &d, bs, b); got != b || d.Kind != tt.wantKind {
					t.Fatalf("Picked(%s) = %s, kind %v; want %s, %v", b, got, d.Kind, b, tt.wantKind)
				}
			}
			ck, set := a.Commit(ctx, req, &d, bs, "c", "")
			if got, _, _ := store.Get(ctx, storeKey("web", id)); got != tt.wantStore {
				t.Fatalf("store pins %q; want %q", got, tt.wantStore)
			}
			switch {
			case tt.wantHint == "" && set:
				t.Fatalf("cookie reissued (hint %x) for a detour with a young cookie", ck.Hint)
			case tt.wantHint != "" && (!set || ck.Hint != HintFor("web", tt.wantHint)):
				t.Fatalf("cookie %+v (set %v); want one naming %s", ck, set, tt.wantHint)
			}
		})
	}
}

// signedOld marks c as Decode does when a non-first secret signed it.
func signedOld(c Cookie) Cookie {
	c.OldSecret = true
	return c
}
