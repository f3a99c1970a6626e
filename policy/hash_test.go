package policy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/latchgw/latch/discovery"
)

const hashKeys = 50_000

// homes maps hashKeys user keys to backend IDs through header_hash.
func homes(t *testing.T, set *Set) []string {
	t.Helper()
	p := newHeaderHash(set, BuildOptions{HashHeader: "X-User"})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	out := make([]string, hashKeys)
	for i := range out {
		r.Header.Set("X-User", fmt.Sprintf("user-%d", i))
		b, err := p.Pick(r, Skip{})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b.ID
	}
	return out
}

// Consistent hashing: removing 1 of 10 backends moves about 10% of keys,
// and only keys that were on the removed backend; adding one moves keys
// only to the newcomer.
func TestConsistentHashingMovesOnlyTheLeaversKeys(t *testing.T) {
	bs := backends(11)
	_, ten := newSet(t, Options{}, bs[:10])
	_, nine := newSet(t, Options{}, slices.Delete(slices.Clone(bs[:10]), 3, 4)) // b03 leaves
	_, eleven := newSet(t, Options{}, bs)                                       // b10 joins
	before, afterRemove, afterAdd := homes(t, ten), homes(t, nine), homes(t, eleven)
	removed, added := 0, 0
	for i := range before {
		if before[i] != afterRemove[i] {
			removed++
			if before[i] != "b03" {
				t.Fatalf("key %d moved from %s, which stayed, to %s", i, before[i], afterRemove[i])
			}
		} else if before[i] == "b03" {
			t.Fatalf("key %d still on the removed backend", i)
		}
		if before[i] != afterAdd[i] {
			added++
			if afterAdd[i] != "b10" {
				t.Fatalf("key %d moved from %s to %s; only moves to the new b10 are allowed", i, before[i], afterAdd[i])
			}
		}
	}
	// Expect 1/10 ± 2 points, 1/11 ± 2 points: a backend owns ~410 of the
	// 4096 buckets (±5%), and 50,000 keys sample them closely.
	if frac := float64(removed) / hashKeys; frac < 0.08 || frac > 0.12 {
		t.Errorf("removing 1 of 10 backends moved %.1f%% of keys; want 10%% ± 2", frac*100)
	}
	if frac := float64(added) / hashKeys; frac < 0.071 || frac > 0.111 {
		t.Errorf("adding an 11th backend moved %.1f%% of keys; want 9.1%% ± 2", frac*100)
	}
}

// A backend that cannot take new sessions loses its keys to the others,
// spread over all of them; everyone else's keys stay. The table is not
// rebuilt for a health change.
func TestHashUnusableBackend(t *testing.T) {
	bs := backends(5)
	r, set := newSet(t, Options{}, bs)
	before := homes(t, set)
	bs[2].Health = discovery.Critical
	sick := r.Update(snapshot(bs))
	if sick.hashTable() != set.hashTable() {
		t.Fatal("hash table rebuilt although the IDs did not change")
	}
	after := homes(t, sick)
	got := map[string]int{}
	for i := range before {
		if before[i] == "b02" {
			got[after[i]]++
		} else if after[i] != before[i] {
			t.Fatalf("key %d moved from %s, which is healthy, to %s", i, before[i], after[i])
		}
	}
	if got["b02"] != 0 || len(got) != 4 {
		t.Fatalf("keys of the critical b02 went to %v; want spread over the 4 others", got)
	}
	// Health back: every key is home again.
	bs[2].Health = discovery.Passing
	if again := homes(t, r.Update(snapshot(bs))); !slices.Equal(again, before) {
		t.Fatal("keys did not return home after recovery")
	}
}

// With most backends unusable a key walks past its probes to the exact
// rendezvous fallback, and still finds the one usable backend, the same
// one each time. Skip counts as unusable.
func TestHashFallbackBeyondProbes(t *testing.T) {
	bs := backends(64)
	for i := range bs {
		if i != 41 {
			bs[i].Health = discovery.Critical
		}
	}
	_, set := newSet(t, Options{}, bs)
	counts := homes(t, set)
	for i, id := range counts {
		if id != "b41" {
			t.Fatalf("key %d went to %s; want the only usable b41", i, id)
		}
	}
	var skip Skip
	skip.Add(set.Lookup("b41"))
	p := newHeaderHash(set, BuildOptions{HashHeader: "X-User"})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User", "u")
	if _, err := p.Pick(r, skip); err != ErrNoBackend {
		t.Fatalf("only usable backend skipped: %v; want ErrNoBackend", err)
	}
}

// Replicas agree: two registries with the same IDs build the same table,
// whatever the order or other fields of their snapshots.
func TestHashTableSameOnEveryReplica(t *testing.T) {
	a := backends(20)
	b := slices.Clone(a)
	slices.Reverse(b)
	for i := range b {
		b[i].Addr, b[i].Weight = "192.0.2.1:1", 7
	}
	_, sa := newSet(t, Options{}, a)
	_, sb := newSet(t, Options{}, b)
	if ta, tb := sa.hashTable(), sb.hashTable(); ta == tb || !slices.Equal(ta.buckets, tb.buckets) {
		t.Fatal("replicas built different tables for the same IDs")
	}
}

func TestHashPickersDeclineWithoutKey(t *testing.T) {
	_, set := newSet(t, Options{}, backends(3))
	opts := BuildOptions{HashHeader: "X-User", HashCookie: "uid"}
	bad := httptest.NewRequest(http.MethodGet, "/", nil)
	bad.RemoteAddr = "not an address"
	bad.Header.Set("Cookie", "other=1")
	for _, name := range []string{"ip_hash", "header_hash", "cookie_hash"} {
		if _, err := Builders[name](set, opts).Pick(bad, Skip{}); err != ErrDecline {
			t.Errorf("%s without a key: %v; want ErrDecline", name, err)
		}
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"only", []string{"uid=42"}, "42"},
		{"among others", []string{"a=1; uid=42; b=2"}, "42"},
		{"second line", []string{"a=1", "uid=42"}, "42"},
		{"quoted", []string{`uid="42"`}, "42"},
		{"prefix is not a match", []string{"uidx=1; xuid=2"}, ""},
		{"first wins", []string{"uid=1; uid=2"}, "1"},
		{"absent", []string{"a=1"}, ""},
		{"no header", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CookieValue(tt.lines, "uid"); got != tt.want {
				t.Fatalf("CookieValue(%q) = %q; want %q", tt.lines, got, tt.want)
			}
		})
	}
}

func TestIPHashStableAndTrustedProxies(t *testing.T) {
	_, set := newSet(t, Options{}, backends(5))
	p := newIPHash(set, BuildOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	at := func(remote, xff string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		b, err := p.Pick(r, Skip{})
		if err != nil {
			t.Fatal(err)
		}
		return b.ID
	}
	if at("203.0.113.1:1", "") != at("203.0.113.1:2", "") {
		t.Fatal("same client IP, different ports: different backends")
	}
	// Through a trusted proxy the forwarded client decides...
	if at("10.1.1.1:1", "198.51.100.7") != at("198.51.100.7:9", "") {
		t.Fatal("trusted proxy: X-Forwarded-For client not used")
	}
	// ...from an untrusted peer it does not: 100 forged clients, one home.
	seen := map[string]bool{}
	for i := range 100 {
		seen[at("203.0.113.9:1", fmt.Sprintf("198.51.100.%d", i))] = true
	}
	if len(seen) != 1 {
		t.Fatalf("untrusted X-Forwarded-For changed the pick: %d backends", len(seen))
	}
}
