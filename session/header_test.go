package session

import (
	"context"
	"testing"
	"time"
)

// A session keyed on a request header: the first request pins the
// backend that answered, the next ones keep it, a pick elsewhere re-pins
// it, an unpin starts it again, and no cookie is ever issued.
func TestHeaderSession(t *testing.T) {
	ctx := context.Background()
	a := NewAffinity(Options{Store: NewMemoryStore(100, nil), Codec: codec(t, newSecret)})
	bs := fakeBackends{usable: map[string]bool{"a": true, "b": true}}
	req := Request{Service: "web", TTL: time.Minute, FromHeader: true, AppValue: "session-7"}

	d := a.Resolve(ctx, req, bs)
	if d.Kind != KindNew || d.Backend != "" || !d.Store {
		t.Fatalf("first request: %+v; want a new session to pin", d)
	}
	if _, set := a.Commit(ctx, req, &d, bs, "a", ""); set {
		t.Fatal("first request: a cookie was issued")
	}
	d = a.Resolve(ctx, req, bs)
	if d.Kind != KindSticky || d.Backend != "a" {
		t.Fatalf("second request: %+v; want kept on a", d)
	}
	if _, set := a.Commit(ctx, req, &d, bs, "a", ""); set {
		t.Fatal("second request: a cookie was issued")
	}

	bs.usable["a"] = false
	d = a.Resolve(ctx, req, bs)
	if d.Kind != KindRepinned || d.Backend != "" || d.Pinned != "a" {
		t.Fatalf("a down: %+v; want a re-pin from a", d)
	}
	if w := picked(ctx, a, req, &d, bs, "b"); w != "b" {
		t.Fatalf("re-pin went to %q; want b", w)
	}
	if _, set := a.Commit(ctx, req, &d, bs, "b", ""); set {
		t.Fatal("re-pin: a cookie was issued")
	}
	bs.usable["a"] = true
	if d = a.Resolve(ctx, req, bs); d.Kind != KindSticky || d.Backend != "b" {
		t.Fatalf("after the re-pin: %+v; want kept on b", d)
	}

	// Unpinned (admin API): the session starts again under its key, placed
	// by the policy, and is kept there.
	if err := a.Unpin(ctx, "web", IDFromValue("session-7"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if d = a.Resolve(ctx, req, bs); d.Kind != KindNew || d.Backend != "" || !d.Store {
		t.Fatalf("after an unpin: %+v; want a new session to pin", d)
	}
	if _, set := a.Commit(ctx, req, &d, bs, "a", ""); set {
		t.Fatal("after an unpin: a cookie was issued")
	}
	if d = a.Resolve(ctx, req, bs); d.Kind != KindSticky || d.Backend != "a" {
		t.Fatalf("after the unpin's new pin: %+v; want kept on a", d)
	}

	other := req
	other.AppValue = "session-8"
	if d = a.Resolve(ctx, other, bs); d.Kind != KindNew {
		t.Fatalf("another header value: %+v; want a session of its own", d)
	}
	if d = a.Resolve(ctx, Request{Service: "web", TTL: time.Minute, FromHeader: true}, bs); d.HasID || d.Kind != KindNone {
		t.Fatalf("no header: %+v; want no session", d)
	}
}

// Issue 27: the kept backend answered with a retry.on_status code and the
// policy picked b. A header session is detoured (b serves the request, the
// pin stays on a: anyone who knows a header's value could otherwise move
// the session); a cookie session moves to b, as before; and a decline by
// a backend the session is not pinned to changes nothing.
func TestDeclinedDetoursHeaderSession(t *testing.T) {
	for _, tt := range []struct {
		name       string
		fromHeader bool
		declinedBy string
		wantKind   Kind
		wantPin    string
	}{
		{"header session", true, "a", KindDetoured, "a"},
		{"header session, another backend declined", true, "c", KindRepinned, "b"},
		{"cookie session", false, "a", KindRepinned, "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a := NewAffinity(Options{Store: NewMemoryStore(100, nil), Codec: codec(t, newSecret)})
			bs := fakeBackends{usable: map[string]bool{"a": true, "b": true}}
			req := Request{Service: "web", TTL: time.Minute}
			if tt.fromHeader {
				req.FromHeader, req.AppValue = true, "bearer-token"
			}
			d := a.Resolve(ctx, req, bs)
			ck, _ := a.Commit(ctx, req, &d, bs, "a", "")
			if !tt.fromHeader {
				req.Cookie = a.Codec().Encode(ck)
			}
			if d = a.Resolve(ctx, req, bs); d.Kind != KindSticky || d.Backend != "a" {
				t.Fatalf("second request: %+v; want kept on a", d)
			}
			d.Declined(req, tt.declinedBy)
			if got := picked(ctx, a, req, &d, bs, "b"); got != "b" || d.Kind != tt.wantKind {
				t.Fatalf("b picked after %s declined: served by %s, kind %v; want b, %v", tt.declinedBy, got, d.Kind, tt.wantKind)
			}
			a.Commit(ctx, req, &d, bs, "b", "")
			if d = a.Resolve(ctx, req, bs); d.Backend != tt.wantPin {
				t.Fatalf("next request: %+v; want it on %s", d, tt.wantPin)
			}
		})
	}
}
